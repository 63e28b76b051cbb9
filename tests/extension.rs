//! The loadable extension in the stock DuckDB CLI and in Python's duckdb: builds `extension/`, packages it, loads it unsigned, and checks hash parity on the 2,000 reference cells and the macros on an ingested database.
//!
//! Needs the project virtualenv `.venv` with `duckdb-cli` and `duckdb` from
//! PyPI (`.ci/run` creates it); without it the test says SKIPPED and passes.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{ROOT, build_extension, run, venv_bin};

#[test]
fn extension_loads_into_the_stock_cli_and_python() {
    let (Some(cli), Some(python)) = (venv_bin("duckdb"), venv_bin("python")) else {
        common::skipped(
            "no .venv with duckdb-cli and duckdb (run .ci/run, or: python3 -m venv .venv && .venv/bin/pip install duckdb-cli duckdb)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ext = build_extension(dir.path(), Path::new(env!("CARGO_BIN_EXE_nasbench")));
    // The extension runs inside the host's DuckDB: it must not carry a
    // bundled one (which alone is over 50 MB).
    let size = std::fs::metadata(&ext).unwrap().len();
    assert!(
        size < 40 << 20,
        "{size} bytes: a bundled DuckDB was linked in"
    );
    let load = format!("LOAD '{}';", ext.display());
    let sample = Path::new(ROOT).join("tests/fixtures/graphs_sample.tsv");

    // Hash parity on the reference cells, in both argument forms.
    let parity = format!(
        "{load}
         CREATE TABLE ref AS SELECT column0 AS hash, column3 AS bits, column4 AS labels
           FROM read_csv('{}', delim = '\t', header = false, all_varchar = true, skip = 1);
         SELECT count(*) AS n,
                count(*) FILTER (WHERE nasbench_hash(bits, labels) = hash) AS bits_ok,
                count(*) FILTER (WHERE nasbench_hash(prune(bits, labels).matrix, prune(bits, labels).ops) = hash) AS nested_ok
         FROM ref;",
        sample.display()
    );
    let out = run(Command::new(&cli).args(["-unsigned", "-csv", "-c", &parity]));
    assert_eq!(out.trim().lines().last(), Some("2000,2000,2000"), "{out}");

    // The macros and views on a database written by `nasbench ingest`.
    std::fs::write(
        dir.path().join("s.tfrecord"),
        include_bytes!("fixtures/nasbench_real_sample.tfrecord"),
    )
    .unwrap();
    run(Command::new(env!("CARGO_BIN_EXE_nasbench"))
        .current_dir(dir.path())
        .args(["ingest", "-q", "s.tfrecord", "--db", "s.duckdb"]));
    let db = dir.path().join("s.duckdb");
    let q = format!(
        "{load} SELECT hash, round(mean_accuracy, 4) FROM top_cells(1);
         SELECT count(*) FROM nasbench_query('0111010000000100000010000100000000100000010000000', '-1,1,0,0,0,2,-2');"
    );
    let out = run(Command::new(&cli)
        .arg("-unsigned")
        .arg("-csv")
        .arg(&db)
        .args(["-c", &q]));
    assert!(
        out.contains("28cfc7874f6d200472e1a9dcd8650aa0,0.9364"),
        "{out}"
    );
    assert!(out.trim().ends_with("\n3"), "{out}");

    // Python's duckdb.
    let py = format!(
        "import duckdb\n\
         c = duckdb.connect({db:?}, config={{'allow_unsigned_extensions': True}})\n\
         c.execute(\"LOAD '{ext}'\")\n\
         print(c.sql(\"SELECT nasbench_params(adjacency, array_to_string(ops, ',')) = trainable_parameters FROM models\").fetchall())\n\
         print(c.sql(\"SELECT nasbench_check('0100', 'input,output')\").fetchall())",
        db = db.display().to_string(),
        ext = ext.display()
    );
    let out = run(Command::new(&python).args(["-c", &py]));
    assert_eq!(out, "[(True,), (True,), (True,)]\n[(None,)]\n", "{out}");
}
