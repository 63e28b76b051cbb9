//! Every integration test, in one binary: one link of the bundled DuckDB
//! instead of one per file, and one pool of test threads across all of them,
//! so a long test in one file overlaps the others instead of leaving a core
//! idle. Each `tests/<name>.rs` is a module here; run one file's tests with
//! `cargo test --test integration <name>::`.

mod common;

mod api;
mod cli;
mod cli_ingest;
mod cli_query;
mod cli_sql;
mod db;
mod extension;
mod fuzz;
mod generate;
mod gpu;
mod index_fuzz;
mod ingest;
mod kernels;
mod notebooks;
mod original_tests;
mod properties;
mod real_values;
mod record;
mod reliability;
mod slurm;
mod sql_functions;
mod sqllogic;
mod tfrecord;
mod train;
mod train_ops;
