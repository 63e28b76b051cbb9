//! Executes every notebook in `notebooks/` headless (nbconvert) against a database of the real sample plus synthetic data; fails if any cell errors.
//!
//! Needs the `.venv` that `.ci/run` creates (nbclient, nbconvert, ipykernel,
//! pandas, polars, matplotlib, pyarrow, duckdb); without it: SKIPPED.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{ROOT, build_extension, run, venv_bin};

const SAMPLE: &[u8] = include_bytes!("fixtures/nasbench_real_sample.tfrecord");

#[test]
fn every_notebook_runs_without_errors() {
    let Some(python) = venv_bin("python") else {
        common::skipped("no .venv (run .ci/run)");
        return;
    };
    let probe = Command::new(&python)
        .args([
            "-c",
            "import nbclient, nbconvert, ipykernel, pandas, polars, matplotlib, pyarrow, duckdb",
        ])
        .output()
        .unwrap();
    if !probe.status.success() {
        common::skipped(&format!(
            "the .venv lacks the notebook packages ({})",
            String::from_utf8_lossy(&probe.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
        return;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_nasbench"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The real sample followed by synthetic runs at all four budgets:
    // TFRecord files concatenate.
    run(Command::new(bin).current_dir(d).args([
        "synth",
        "--full",
        "--cells",
        "400",
        "-q",
        "-o",
        "syn.tfrecord",
    ]));
    let mut both = SAMPLE.to_vec();
    both.extend(std::fs::read(d.join("syn.tfrecord")).unwrap());
    std::fs::write(d.join("both.tfrecord"), both).unwrap();
    run(Command::new(bin).current_dir(d).args([
        "ingest",
        "-q",
        "both.tfrecord",
        "--db",
        "nb.duckdb",
    ]));
    run(Command::new(bin).current_dir(d).args([
        "export",
        "--db",
        "nb.duckdb",
        "--parquet",
        "parquet",
    ]));
    let ext = build_extension(d, bin);

    let mut notebooks: Vec<_> = std::fs::read_dir(Path::new(ROOT).join("notebooks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ipynb"))
        .collect();
    notebooks.sort();
    assert!(notebooks.len() >= 2);
    for nb in &notebooks {
        run(Command::new(&python)
            .current_dir(d)
            .args([
                "-m",
                "nbconvert",
                "--to",
                "notebook",
                "--execute",
                "--output-dir",
            ])
            .arg(d.join("executed"))
            .arg(nb)
            .env("NASBENCH_PARQUET", d.join("parquet"))
            .env("NASBENCH_DB", d.join("nb.duckdb"))
            .env("NASBENCH_EXTENSION", &ext)
            .env("NASBENCH_FIGURES", d.join("figures"))
            .env("MPLBACKEND", "Agg"));
    }
    for fig in [
        "accuracy_vs_parameters.png",
        "accuracy_per_budget.png",
        "op_effect.png",
        "accuracy_vs_budget.png",
    ] {
        let len = std::fs::metadata(d.join("figures").join(fig))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 1000, "{fig} was not drawn");
    }
}
