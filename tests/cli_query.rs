//! `nasbench query` end to end on the ingested real sample: one-shot, all repeats, batches, errors, Parquet.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{REAL_CELLS, ROOT, run};
use nasbench::api::NasBench;
use nasbench::cell::spec::ModelSpec;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nasbench");
const README_BITS: &str = "0111010000000100000010000100000000100000010000000";
const README_OPS: &str =
    "input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output";

fn sample_db(dir: &Path) -> (PathBuf, PathBuf) {
    let db = dir.join("s.duckdb");
    let pq = dir.join("pq");
    run(Command::new(BIN)
        .arg("ingest")
        .arg(Path::new(ROOT).join("tests/fixtures/nasbench_real_sample.tfrecord"))
        .arg("--db")
        .arg(&db)
        .arg("--parquet")
        .arg(&pq));
    (db, pq)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn one_shot_query_prints_the_original_fields_as_the_library_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (db, pq) = sample_db(dir.path());
    for source in [&db, &pq] {
        let out = run(Command::new(BIN)
            .args([
                "query",
                "--seed",
                "11",
                "--epochs",
                "36",
                "--halfway",
                "--db",
            ])
            .arg(source)
            .args(["--matrix", README_BITS, "--ops", README_OPS]));
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            &keys[..7],
            [
                "module_adjacency",
                "module_operations",
                "trainable_parameters",
                "training_time",
                "train_accuracy",
                "validation_accuracy",
                "test_accuracy"
            ]
        );
        // The library with the same seed draws the same repeat.
        let m: Vec<Vec<i64>> = README_BITS
            .as_bytes()
            .chunks(7)
            .map(|r| r.iter().map(|&b| i64::from(b - b'0')).collect())
            .collect();
        let spec = ModelSpec::new(&m, README_OPS.split(',').map(String::from).collect()).unwrap();
        let want = NasBench::lazy(&db, Some(11))
            .unwrap()
            .query(&spec, 36, true)
            .unwrap();
        assert_eq!(v, want.to_json());
        // The stored (canonical) form comes back, not the form asked for.
        let adj: Vec<Vec<u8>> = serde_json::from_value(v["module_adjacency"].clone()).unwrap();
        let bits: String = adj.iter().flatten().map(|b| char::from(b'0' + b)).collect();
        assert_eq!(bits, REAL_CELLS[0].1);
        assert_eq!(v["module_hash"], REAL_CELLS[0].0);
    }
}

#[test]
fn all_repeats_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = sample_db(dir.path());
    let out = run(Command::new(BIN)
        .args(["query", "--all-repeats", "--db"])
        .arg(&db)
        .args(["--hash", REAL_CELLS[0].0]));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let reps = v["repeats"].as_array().unwrap();
    assert_eq!(reps.len(), 3);
    assert!(
        reps.iter()
            .any(|r| r["final_training_time"] == 1155.85302734375)
    );

    // The hash of input -> output, from the library's own hashing.
    let unknown = ModelSpec::new(
        &[vec![0, 1], vec![0, 0]],
        vec!["input".into(), "output".into()],
    )
    .unwrap()
    .hash()
    .unwrap()
    .to_hex();
    let unknown = format!("hash {unknown} is not in the dataset");
    for (args, message) in [
        (
            vec!["--matrix", "0000", "--ops", "input,output"],
            "invalid spec, provided graph is disconnected.",
        ),
        (
            vec!["--matrix", "0100", "--ops", "input,output"],
            unknown.as_str(),
        ),
        (
            vec!["--hash", REAL_CELLS[0].0, "--epochs", "7"],
            "invalid number of epochs, must be one of {108, 4, 12, 36}",
        ),
        (vec!["--matrix", "011", "--ops", "input,output"], "matrix"),
    ] {
        let o = Command::new(BIN)
            .args(["query", "--db"])
            .arg(&db)
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(o.stdout.is_empty());
        assert!(err.contains(message), "{args:?}: {err}");
    }
}

#[test]
fn batch_answers_each_line_and_totals_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = sample_db(dir.path());
    let (h0, bits1, ops1, _) = REAL_CELLS[1];
    let input = format!(
        "# a comment, then a blank line\n\n\
         {{\"matrix\": \"{README_BITS}\", \"ops\": \"{README_OPS}\", \"epochs\": 12, \"halfway\": true}}\n\
         [\"{bits1}\", \"{ops1}\"]\n\
         {bits1} {ops1}\n\
         {h}\n\
         not a query\n\
         {{\"hash\": \"{h}\", \"epochs\": 4}}\n",
        h = REAL_CELLS[0].0,
    );
    let _ = h0;
    // One line failed: every line is still answered, and the status says so.
    let (code, lines) = batch_seeded(&db, 3, &input);
    assert_eq!(code, Some(1));
    assert_eq!(lines.len(), 7, "six queries and the counters");
    assert_eq!(lines[0]["epochs"], 12);
    assert_eq!(lines[0]["stop_halfway"], true);
    assert_eq!(lines[1]["module_hash"], REAL_CELLS[1].0);
    assert_eq!(lines[2]["module_hash"], REAL_CELLS[1].0);
    assert_eq!(lines[3]["module_hash"], REAL_CELLS[0].0);
    assert_eq!(lines[4]["line"], 7);
    assert!(lines[4]["error"].as_str().unwrap().contains("BITS OPS"));
    assert_eq!(lines[5]["epochs"], 4);
    let answers: Vec<&Value> = lines[..6]
        .iter()
        .filter(|l| l.get("error").is_none())
        .collect();
    let time: f64 = answers
        .iter()
        .map(|l| l["training_time"].as_f64().unwrap())
        .sum();
    let epochs: u64 = answers
        .iter()
        .map(|l| {
            let e = l["epochs"].as_u64().unwrap();
            if l["stop_halfway"] == true { e / 2 } else { e }
        })
        .sum();
    assert_eq!(epochs, 6 + 108 * 3 + 4);
    let counters = &lines[6]["budget_counters"];
    assert_eq!(counters["total_epochs_spent"], epochs);
    assert!((counters["training_time_spent"].as_f64().unwrap() - time).abs() < 1e-9);
    // The batch built the index beside the database; a second batch maps it.
    let mut idx = db.as_os_str().to_owned();
    idx.push(".qidx");
    assert!(Path::new(&idx).is_file());
}

/// Runs a batch on stdin with `--seed seed`; returns the exit code and the
/// output lines.
fn batch_seeded(db: &Path, seed: u64, input: &str) -> (Option<i32>, Vec<Value>) {
    let mut child = Command::new(BIN)
        .args(["query", "--seed", &seed.to_string(), "--batch", "-", "--db"])
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    (
        o.status.code(),
        json_lines(&String::from_utf8(o.stdout).unwrap()),
    )
}

fn batch(db: &Path, input: &str) -> (Option<i32>, Vec<Value>) {
    batch_seeded(db, 1, input)
}

#[test]
fn batch_lines_with_unknown_keys_or_wrong_types_are_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = sample_db(dir.path());
    let h = REAL_CELLS[0].0;
    let cases = [
        // The typo of `epochs` that used to answer for 108 epochs.
        (
            format!("{{\"hash\": \"{h}\", \"epoch\": 36}}"),
            "unknown key \"epoch\"",
        ),
        (
            format!("{{\"hash\": \"{h}\", \"epochs\": \"36\"}}"),
            "key \"epochs\"",
        ),
        (
            format!("{{\"hash\": \"{h}\", \"epochs\": -4}}"),
            "key \"epochs\"",
        ),
        (
            format!("{{\"hash\": \"{h}\", \"halfway\": 1}}"),
            "key \"halfway\"",
        ),
        ("{\"hash\": 17}".to_string(), "key \"hash\""),
        (
            format!("{{\"hash\": \"{h}\", \"matrix\": \"0100\", \"ops\": \"input,output\"}}"),
            "not both",
        ),
        (
            "{\"matrix\": 5, \"ops\": \"input,output\"}".to_string(),
            "key \"matrix\"",
        ),
        (
            "{\"matrix\": \"0100\", \"ops\": true}".to_string(),
            "key \"ops\"",
        ),
        ("{\"matrix\": \"0100\"}".to_string(), "lacks \"ops\""),
        ("[\"0100\"]".to_string(), "[matrix, ops]"),
    ];
    for (line, message) in &cases {
        let (code, lines) = batch(&db, &format!("{line}\n"));
        assert_eq!(code, Some(1), "{line}");
        assert_eq!(lines.len(), 2, "{line}: the error and the counters");
        assert_eq!(lines[0]["line"], 1, "{line}");
        let err = lines[0]["error"].as_str().unwrap_or_default();
        assert!(err.contains(message), "{line}: {err}");
        assert_eq!(lines[1]["budget_counters"]["total_epochs_spent"], 0);
    }
    // Every line failing: still a failure, one error per line.
    let all: String = cases.iter().map(|(l, _)| format!("{l}\n")).collect();
    let (code, lines) = batch(&db, &all);
    assert_eq!(code, Some(1));
    assert_eq!(lines.len(), cases.len() + 1);
    // A clean batch exits 0.
    let (code, lines) = batch(
        &db,
        &format!("{{\"hash\": \"{h}\", \"epochs\": 36, \"halfway\": false}}\n"),
    );
    assert_eq!(code, Some(0));
    assert_eq!(lines[0]["epochs"], 36);
    assert_eq!(lines[0]["module_hash"], h);
}
