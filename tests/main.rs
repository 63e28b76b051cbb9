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

/// With `autotests` off, a `tests/<name>.rs` without its `mod` line above
/// would compile into nothing and its tests would never run.
#[test]
fn every_test_file_is_a_module_here() {
    let declared = include_str!("main.rs");
    let dir = std::path::Path::new(common::ROOT).join("tests");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(module) = name.strip_suffix(".rs") else {
            continue;
        };
        if module != "main" && !declared.lines().any(|l| l == format!("mod {module};")) {
            missing.push(name);
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "tests/main.rs declares no module for {missing:?}: add `mod <name>;` there"
    );
}
