//! `nasbench sql`: one-shot statements, scripts on stdin, output formats, and the ranking query checked against independently decoded values.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const SAMPLE: &[u8] = include_bytes!("fixtures/nasbench_real_sample.tfrecord");
/// The sample's evaluation points from the independent Python decoder.
const VALUES: &str = include_str!("fixtures/real_sample_values.tsv");

fn nasbench(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nasbench"))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A temporary directory holding `s.duckdb`, the bundled sample ingested by the binary.
fn sample_db() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.tfrecord"), SAMPLE).unwrap();
    let o = nasbench(
        dir.path(),
        &["ingest", "-q", "s.tfrecord", "--db", "s.duckdb"],
        None,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    dir
}

#[test]
fn one_shot_statements_and_formats() {
    let dir = tempfile::tempdir().unwrap();
    let o = nasbench(
        dir.path(),
        &[
            "sql",
            "--format",
            "csv",
            "-c",
            "SELECT nasbench_hash('0111010000000100000010000100000000100000010000000', '-1,1,0,0,0,2,-2') AS h",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "h\n28cfc7874f6d200472e1a9dcd8650aa0\n");
    // A script on stdin, several statements, JSON lines.
    let o = nasbench(
        dir.path(),
        &["sql", "--format", "json"],
        Some("SELECT 1 AS a; -- a comment; with a semicolon\nSELECT 'x;y' AS b;"),
    );
    assert_eq!(text(&o.stdout), "{\"a\":1}\n{\"b\":\"x;y\"}\n");
    // Parquet: the last result, read back by the parquet crate.
    let o = nasbench(
        dir.path(),
        &[
            "sql",
            "--format",
            "parquet",
            "-o",
            "r.parquet",
            "-c",
            "SELECT range AS i FROM range(1000)",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let f = std::fs::File::open(dir.path().join("r.parquet")).unwrap();
    let r = parquet::file::reader::SerializedFileReader::new(f).unwrap();
    use parquet::file::reader::FileReader;
    assert_eq!(r.metadata().file_metadata().num_rows(), 1000);
    // Errors are DuckDB's, with a non-zero exit.
    let o = nasbench(dir.path(), &["sql", "-c", "SELECT nope"], None);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("nope"), "{}", text(&o.stderr));
}

#[test]
fn ranking_query_returns_the_real_cells_in_order_with_their_means() {
    let dir = sample_db();
    let ranking = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/ranking.sql");
    let o = nasbench(
        dir.path(),
        &["sql", "--db", "s.duckdb", "--format", "csv", "-f", ranking],
        None,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Means of the final validation accuracy at 108 epochs, from the Python
    // decoder's values.
    let mut sums: BTreeMap<String, (f64, u32)> = BTreeMap::new();
    for line in VALUES.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f[2] == "108" && f[3] == "2" {
            let e = sums.entry(f[1].to_string()).or_insert((0.0, 0));
            e.0 += f[7].parse::<f64>().unwrap();
            e.1 += 1;
        }
    }
    let mut want: Vec<(String, f64)> = sums
        .into_iter()
        .map(|(h, (s, n))| (h, s / f64::from(n)))
        .collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    let out = text(&o.stdout);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 3, "{out}");
    for (row, (hash, mean)) in rows.iter().zip(&want) {
        assert_eq!(row[0], hash);
        let got: f64 = row[4].parse().unwrap();
        assert!(
            (got - (mean * 1e4).round() / 1e4).abs() < 1e-9,
            "{row:?} vs {mean}"
        );
        assert_eq!(row[3], "3");
    }
}

#[test]
fn every_example_runs_and_answers() {
    let dir = sample_db();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/examples.sql");
    let o = nasbench(
        dir.path(),
        &[
            "sql", "--db", "s.duckdb", "--format", "json", "-f", examples,
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows: Vec<serde_json::Value> = text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 6: the README cell, given in another (isomorphic) form, is found with
    // its three real 108-epoch runs.
    let looked_up: Vec<f64> = rows
        .iter()
        .filter(|r| r.get("repeat").is_some())
        .map(|r| r["final_validation_accuracy"].as_f64().unwrap())
        .collect();
    assert_eq!(looked_up.len(), 3);
    assert!(
        looked_up
            .iter()
            .any(|v| (v - 0.9376001358032227).abs() < 1e-12)
    );
    // 7: isomorphic proposals 1 and 2 share a hash; 4 is the README cell;
    // 5 is disconnected (NULL hash).
    let groups: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r.get("proposals").is_some())
        .collect();
    assert_eq!(groups[0]["proposals"], serde_json::json!([1, 2]));
    let readme = groups
        .iter()
        .find(|g| g["hash"] == "28cfc7874f6d200472e1a9dcd8650aa0")
        .unwrap();
    assert_eq!(
        (
            readme["in_dataset"].as_bool(),
            readme["trainable_parameters"].as_i64()
        ),
        (Some(true), Some(2694282))
    );
    assert!(
        groups
            .iter()
            .any(|g| g["proposals"] == serde_json::json!([5])
                && g.get("hash").is_none_or(|h| h.is_null()))
    );
    // 8: the disconnected proposal is explained with the original's message.
    assert!(
        rows.iter()
            .any(|r| r["id"] == 5 && r["why"] == "invalid spec, provided graph is disconnected.")
    );
    // 2: top_cells by test accuracy, best first.
    let top: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.get("mean_accuracy").and_then(|v| v.as_f64()))
        .collect();
    assert_eq!(top.len(), 3);
    assert!(top.windows(2).all(|w| w[0] >= w[1]));
}

#[test]
fn export_writes_every_table_and_view() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let dir = sample_db();
    let o = nasbench(
        dir.path(),
        &["export", "--db", "s.duckdb", "--parquet", "pq"],
        None,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    for (name, rows) in [
        ("models", 3),
        ("evaluations", 54),
        ("runs", 18),
        ("model_stats", 6),
    ] {
        let f = std::fs::File::open(dir.path().join(format!("pq/{name}.parquet"))).unwrap();
        let r = SerializedFileReader::new(f).unwrap();
        assert_eq!(r.metadata().file_metadata().num_rows(), rows, "{name}");
    }
    let o = nasbench(
        dir.path(),
        &["export", "--db", "missing.duckdb", "--parquet", "pq"],
        None,
    );
    assert!(text(&o.stderr).contains("missing.duckdb: no such database"));
}

#[test]
fn a_missing_database_is_an_error_unless_created() {
    let dir = tempfile::tempdir().unwrap();
    let o = nasbench(
        dir.path(),
        &["sql", "--db", "typo.duckdb", "-c", "SELECT 1"],
        None,
    );
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("typo.duckdb: no such database"), "{err}");
    assert!(!dir.path().join("typo.duckdb").exists());

    let o = nasbench(
        dir.path(),
        &[
            "sql",
            "--db",
            "new.duckdb",
            "--create",
            "-c",
            "CREATE TABLE t (x INT)",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(dir.path().join("new.duckdb").exists());
    // Once it exists, no flag is needed.
    let o = nasbench(
        dir.path(),
        &[
            "sql",
            "--db",
            "new.duckdb",
            "--format",
            "csv",
            "-c",
            "SELECT count(*) AS n FROM t",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "n\n0\n");
}
