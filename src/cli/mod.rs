//! Command-line interface: argument definitions and dispatch to one module per subcommand.

mod cell;
mod demo;
mod export;
mod extension;
mod fetch;
mod generate;
mod ingest;
mod progress;
mod query;
mod sql;
mod synth;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// NAS-Bench-101 in one program: the exact cell model and hash, the whole
/// search space of 423,624 cells in seconds, and the release files in
/// DuckDB and Parquet.
///
/// A cell is an upper-triangular 0/1 adjacency matrix (vertex 0 is the
/// input, the last vertex the output) and one op per vertex. Matrices are
/// given as a row-major bit string (`0110 0001 0001 0000`) or a JSON nested
/// list (`[[0,1,1,0],[0,0,0,1],[0,0,0,1],[0,0,0,0]]`); ops as comma-separated
/// names (`input,conv3x3-bn-relu,maxpool3x3,output`) or hash labels
/// (`-1,0,2,-2`: -1 input, 0 conv3x3-bn-relu, 1 conv1x1-bn-relu,
/// 2 maxpool3x3, -2 output).
#[derive(Parser, Debug)]
#[command(name = "nasbench", version, propagate_version = true)]
#[command(after_help = "Examples:
  nasbench demo
  nasbench ingest nasbench_only108.tfrecord --db nasbench.duckdb --parquet parquet/
  nasbench generate -o cells.parquet
  nasbench hash --matrix 0111010000000100000010000100000000100000010000000 \\
      --ops input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output
  nasbench prune --matrix '[[0,1,0,0],[0,0,0,1],[0,0,0,0],[0,0,0,0]]' --ops -1,0,1,-2 --json")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Demo(demo::Args),
    Ingest(ingest::Args),
    Sql(sql::Args),
    Export(export::Args),
    Fetch(fetch::Args),
    Generate(generate::Args),
    Synth(synth::Args),
    PackageExtension(extension::Args),
    Query(query::Args),
    Train(train::Args),
    SynthCifar(train::SynthArgs),
    Worker(train::WorkerArgs),
    IngestRuns(train::IngestRunsArgs),
    Hash(cell::HashArgs),
    Prune(cell::PruneArgs),
}

/// Runs the parsed command; `Err` is printed with its causes by `main`.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Ingest(a) => ingest::run(a),
        Command::Sql(a) => sql::run(a),
        Command::Export(a) => export::run(a),
        Command::Fetch(a) => fetch::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Synth(a) => synth::run(a),
        Command::PackageExtension(a) => extension::run(a),
        Command::Query(a) => query::run(a),
        Command::Train(a) => train::run(a),
        Command::SynthCifar(a) => train::synth(a),
        Command::Worker(a) => train::worker(a),
        Command::IngestRuns(a) => train::ingest_runs(a),
        Command::Hash(a) => cell::hash(a),
        Command::Prune(a) => cell::prune(a),
    }
}
