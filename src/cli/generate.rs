//! `nasbench generate`: enumerate the search space and write it as Parquet.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use nasbench::cell::generate::{GenerateOptions, generate};
use nasbench::db::export::{cells_batch, cells_schema, write_parquet};

use super::progress::Bar;

/// Enumerate every NAS-Bench-101 cell, exactly as the original
/// `generate_graphs.py` did, and write one row per unique cell.
///
/// For n = 2..=7 vertices, every upper-triangular matrix whose vertices all
/// lie on an input -> output path and that has at most 9 edges is labeled in
/// every way with the three ops; graphs are de-duplicated by the dataset
/// hash, keeping the first graph found (the form the dataset stores). The
/// full space is 423,624 cells from 1,293,208 labeled graphs.
///
/// Columns: hash, num_vertices, num_edges, adjacency (row-major bit
/// string), ops (list of names), trainable_parameters (dataset network).
/// The per-vertex-count table goes to stdout, the summary line to stderr.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write the cells here as Parquet (zstd). Without it, only the counts
    /// are printed.
    #[arg(short, long, value_name = "FILE.parquet")]
    output: Option<PathBuf>,
    /// Most vertices, input and output included (2..=7).
    #[arg(long, default_value_t = 7, value_name = "N")]
    max_vertices: usize,
    /// Most edges.
    #[arg(long, default_value_t = 9, value_name = "N")]
    max_edges: usize,
    /// Also run the original algorithm (hash every labeled graph) and prove
    /// that every pair of graphs sharing a hash is isomorphic, by exhaustive
    /// search. Slower.
    #[arg(long)]
    verify_isomorphism: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let opts = GenerateOptions {
        max_vertices: a.max_vertices,
        max_edges: a.max_edges,
        verify_isomorphism: a.verify_isomorphism,
    };
    let bar = Bar::new(a.quiet);
    let space = generate(&opts, &bar)?;
    bar.finish();
    if let Some(path) = &a.output {
        let batch = cells_batch(&space.cells)?;
        write_parquet(path, cells_schema(), &[batch])
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let secs = start.elapsed().as_secs_f64();

    let mut out = std::io::stdout().lock();
    writeln!(out, "vertices\tmatrices\tlabeled_graphs\tcells_cumulative")?;
    for v in &space.per_vertices {
        writeln!(
            out,
            "{}\t{}\t{}\t{}",
            v.vertices, v.matrices, v.labeled_graphs, v.cumulative_cells
        )?;
    }
    out.flush()?;
    let mut summary = format!(
        "{} cells from {} labeled graphs in {:.2} s",
        space.cells.len(),
        space.labeled_graphs,
        secs
    );
    if space.verified {
        summary.push_str("; verified: every pair of graphs sharing a hash is isomorphic");
    }
    if space.merged_classes > 0 {
        summary.push_str(&format!(
            "; {} non-isomorphic classes share an earlier class's hash (dropped, as the original does)",
            space.merged_classes
        ));
    }
    if let Some(path) = &a.output {
        summary.push_str(&format!("; wrote {}", path.display()));
    }
    eprintln!("{summary}");
    Ok(ExitCode::SUCCESS)
}
