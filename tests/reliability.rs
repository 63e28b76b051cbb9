//! Nothing a user made is lost: re-ingest keeps trained runs, a replace killed at each of its steps leaves the old database or the new one whole, trainers write in short transactions beside readers, and bad training options are refused with the key, value and range.

use crate::common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{REAL_CELLS, ROOT, TINY_TRAIN as TINY, run};
use duckdb::{AccessMode, Config, Connection};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nasbench");

fn sample() -> PathBuf {
    Path::new(ROOT).join("tests/fixtures/nasbench_real_sample.tfrecord")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ingest(db: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["ingest", "-q"])
        .arg(sample())
        .arg("--db")
        .arg(db)
        .args(extra)
        .output()
        .unwrap()
}

fn read_only(db: &Path) -> Connection {
    Connection::open_with_flags(
        db,
        Config::default().access_mode(AccessMode::ReadOnly).unwrap(),
    )
    .unwrap()
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// `nasbench query --batch -` on `db` with `input` on stdin.
fn batch(db: &Path, input: &str) -> Output {
    use std::io::Write;
    let mut c = Command::new(BIN)
        .args(["query", "--batch", "-", "--seed", "1", "--db"])
        .arg(db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

fn wal(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".wal");
    PathBuf::from(s)
}

fn synth_cifar(dir: &Path, per_file: usize) -> PathBuf {
    let data = dir.join("cifar");
    run(Command::new(BIN)
        .args(["synth-cifar", "--image-size", "16", "--images-per-file"])
        .arg(per_file.to_string())
        .arg(&data));
    data
}

fn train(db: &Path, data: &Path, bits: &str, ops: &str, epochs: &str) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "train",
        "-q",
        "--matrix",
        bits,
        "--ops",
        ops,
        "--repeats",
        "1",
    ])
    .args(["--epochs", epochs, "--data"])
    .arg(data)
    .args(TINY)
    .arg("--db")
    .arg(db);
    c
}

/// A cell outside the dataset's space: an identity op on the way.
const IDENTITY_BITS: &str = "011001000";
const IDENTITY_OPS: &str = "input,identity,output";

#[test]
fn reingest_keeps_trained_runs_and_discards_them_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nb.duckdb");
    let data = synth_cifar(dir.path(), 64);
    let o = ingest(&db, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // The train command's default database is the ingest's: same file here.
    let out = run(&mut train(&db, &data, IDENTITY_BITS, IDENTITY_OPS, "1"));
    let trained: Value = serde_json::from_str(out.trim()).unwrap();
    let run_id = trained["run_id"].as_str().unwrap().to_string();
    let (runs, points, models) = {
        let c = read_only(&db);
        (
            count(&c, "SELECT count(*) FROM training_runs"),
            count(
                &c,
                &format!("SELECT count(*) FROM evaluations WHERE source = '{run_id}'"),
            ),
            count(&c, "SELECT count(*) FROM models"),
        )
    };
    assert_eq!((runs, points), (1, 3));

    // Re-ingest: the run, its points and its cell are carried over and counted.
    let o = ingest(&db, &["--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let summary: Value = serde_json::from_str(text(&o.stdout).trim()).unwrap();
    assert_eq!(summary["trained_runs_kept"]["runs"], 1);
    assert_eq!(summary["trained_runs_kept"]["evaluations"], 3);
    assert_eq!(
        summary["trained_runs_kept"]["models"], 1,
        "the identity cell"
    );
    {
        let c = read_only(&db);
        assert_eq!(
            count(
                &c,
                &format!("SELECT count(*) FROM training_runs WHERE run_id = '{run_id}'")
            ),
            1
        );
        assert_eq!(
            count(
                &c,
                &format!("SELECT count(*) FROM evaluations WHERE source = '{run_id}'")
            ),
            3
        );
        assert_eq!(count(&c, "SELECT count(*) FROM models"), models);
        // Trained cells are in SQL beside the dataset's.
        assert_eq!(
            count(&c, "SELECT count(*) FROM model_stats WHERE trained"),
            1
        );
    }
    // The identity cell did not break the index: a batch still answers.
    let q = batch(&db, &format!("{}\n", REAL_CELLS[0].0));
    assert!(q.status.success(), "{}", text(&q.stderr));
    let first: Value = serde_json::from_str(text(&q.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["module_hash"], REAL_CELLS[0].0);

    // The trained cell is queryable by its spec and by its hash.
    let t = Command::new(BIN)
        .args([
            "query",
            "--trained",
            "--matrix",
            IDENTITY_BITS,
            "--ops",
            IDENTITY_OPS,
            "--db",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert!(t.status.success(), "{}", text(&t.stderr));
    let line: Value = serde_json::from_str(text(&t.stdout).trim()).unwrap();
    assert_eq!(line["run_id"], run_id.as_str());
    assert_eq!(line["epochs"], 1);
    assert_eq!(line["final_test_accuracy"], trained["test_accuracy"]);
    let hash = line["hash"].as_str().unwrap().to_string();
    let t = Command::new(BIN)
        .args(["query", "--trained", "--hash", &hash, "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let by_hash: Value = serde_json::from_str(text(&t.stdout).trim()).unwrap();
    assert_eq!(by_hash, line);
    // It is not a dataset cell: the dataset query says so.
    let d = Command::new(BIN)
        .args(["query", "--hash", &hash, "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(d.status.code(), Some(1));
    assert!(
        text(&d.stderr).contains("is not in the dataset"),
        "{}",
        text(&d.stderr)
    );

    // Discarding takes the flag.
    let o = ingest(&db, &["--json", "--discard-trained-runs"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let c = read_only(&db);
    assert_eq!(count(&c, "SELECT count(*) FROM training_runs"), 0);
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM evaluations WHERE source NOT IN ('nasbench-101')"
        ),
        0
    );
    assert_eq!(count(&c, "SELECT count(*) FROM models"), models - 1);
}

/// Adds a made-up trained run and a marker table to `db`, through DuckDB's
/// write-ahead log only when `in_wal` (no checkpoint at close).
fn add_trained_run(db: &Path, in_wal: bool) {
    let c = Connection::open(db).unwrap();
    if in_wal {
        c.execute_batch("PRAGMA disable_checkpoint_on_shutdown")
            .unwrap();
    }
    c.execute_batch(
        "CREATE TABLE old_marker (x INTEGER);
         INSERT INTO training_runs VALUES ('run-1', 'ffffffffffffffffffffffffffffffff', 4, 1, '{}',
             'cpu', 'test', 0, 10, now()::TIMESTAMP, now()::TIMESTAMP, 'completed', NULL, 1);
         INSERT INTO models VALUES ('ffffffffffffffffffffffffffffffff', 3, 2, '011001000',
             [[0,1,1],[0,0,1],[0,0,0]], ['input', 'identity', 'output'], 10);
         INSERT INTO evaluations VALUES
             ('ffffffffffffffffffffffffffffffff', 4, 1, 0, 0, 0, 0.1, 0.1, 0.1, NULL, 5, 'run-1'),
             ('ffffffffffffffffffffffffffffffff', 4, 1, 1, 2, 1, 0.5, 0.5, 0.5, NULL, 5, 'run-1'),
             ('ffffffffffffffffffffffffffffffff', 4, 1, 2, 4, 2, 0.9, 0.9, 0.9, NULL, 5, 'run-1');",
    )
    .unwrap();
    drop(c);
    assert_eq!(
        wal(db).exists(),
        in_wal,
        "the run is in the log only when asked"
    );
}

/// Which database is at `db`: the old one (it has the marker) or the new one.
fn which(db: &Path) -> &'static str {
    let c = read_only(db);
    // Nothing lost either way: the run and its three points.
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM training_runs WHERE run_id = 'run-1'"
        ),
        1
    );
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM evaluations WHERE source = 'run-1'"
        ),
        3
    );
    let marker = count(
        &c,
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'old_marker'",
    );
    if marker == 1 { "old" } else { "new" }
}

#[test]
fn a_replace_killed_at_any_step_leaves_the_old_database_or_the_new_one_whole() {
    let points = [
        ("replace:built", "old"),
        ("replace:new-closed", "old"),
        ("replace:old-checkpointed", "old"),
        ("replace:synced", "old"),
        ("replace:renamed", "new"),
    ];
    let mut kills = 0;
    for in_wal in [false, true] {
        let base = tempfile::tempdir().unwrap();
        let original = base.path().join("orig.duckdb");
        assert!(ingest(&original, &[]).status.success());
        add_trained_run(&original, in_wal);
        for (point, expect) in points {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("nb.duckdb");
            std::fs::copy(&original, &db).unwrap();
            if in_wal {
                std::fs::copy(wal(&original), wal(&db)).unwrap();
            }
            let before = (std::fs::read(&db).unwrap(), std::fs::read(wal(&db)).ok());
            let o = Command::new(BIN)
                .args(["ingest", "-q", "--no-query-index"])
                .arg(sample())
                .arg("--db")
                .arg(&db)
                .env("NASBENCH_FAILPOINT", point)
                .output()
                .unwrap();
            // Without a log there is nothing to checkpoint: that point is
            // never reached and the ingest completes.
            let reached = in_wal || point != "replace:old-checkpointed";
            if reached {
                assert_eq!(o.status.signal(), Some(9), "{point}: {}", text(&o.stderr));
                kills += 1;
            } else {
                assert!(o.status.success(), "{point}: {}", text(&o.stderr));
            }
            let state = if reached { expect } else { "new" };
            assert_eq!(which(&db), state, "{point} (log: {in_wal})");
            if state == "new" {
                assert!(!wal(&db).exists(), "{point}: a log beside the new file");
            }
            if matches!(point, "replace:built" | "replace:new-closed") {
                let after = (std::fs::read(&db).unwrap(), std::fs::read(wal(&db)).ok());
                assert!(after == before, "{point}: the old files changed");
            }
            // The next ingest cleans up after the killed one and completes.
            let o = ingest(&db, &["--no-query-index"]);
            assert!(o.status.success(), "{}", text(&o.stderr));
            assert_eq!(which(&db), "new");
            assert!(!wal(&db).exists());
            let left: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp"))
                .collect();
            assert!(left.is_empty(), "{point}: temporaries left: {left:?}");
        }
    }
    assert_eq!(kills, 9);
}

#[test]
fn trainers_write_briefly_so_readers_and_a_second_trainer_share_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nb.duckdb");
    let data = synth_cifar(dir.path(), 256);
    assert!(ingest(&db, &[]).status.success());
    let cell = (
        "0110000100010000",
        "input,conv3x3-bn-relu,maxpool3x3,output",
    );
    let quiet = |mut c: Command| {
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    let mut a = quiet(train(&db, &data, cell.0, cell.1, "3"))
        .spawn()
        .unwrap();
    let mut b = quiet(train(&db, &data, IDENTITY_BITS, IDENTITY_OPS, "3"))
        .spawn()
        .unwrap();
    // While both train, the database is free for readers.
    let mut reads = 0;
    while a.try_wait().unwrap().is_none() || b.try_wait().unwrap().is_none() {
        let o = Command::new(BIN)
            .args(["sql", "--format", "csv", "--db"])
            .arg(&db)
            .args(["-c", "SELECT count(*) AS n FROM models"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        let q = Command::new(BIN)
            .args(["query", "--seed", "1", "--hash", REAL_CELLS[0].0, "--db"])
            .arg(&db)
            .output()
            .unwrap();
        assert!(q.status.success(), "{}", text(&q.stderr));
        reads += 1;
    }
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    assert!(reads >= 1);
    let c = read_only(&db);
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM training_runs WHERE status = 'completed'"
        ),
        2
    );
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM evaluations WHERE source IN (SELECT run_id FROM training_runs)"
        ),
        6
    );
}

#[test]
fn training_options_outside_their_range_are_refused_with_key_value_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_cifar(dir.path(), 32);
    let db = dir.path().join("nb.duckdb");
    let cases: [(&[&str], &str); 9] = [
        (
            &["--config", "num_labels=0"],
            "num_labels=0: must be an integer in 1..=1000",
        ),
        (
            &["--config", "batch_size=0"],
            "batch_size=0: must be an integer in 1..=65536",
        ),
        (
            &["--config", "momentum=1"],
            "momentum=1: must be a number in [0, 1)",
        ),
        (
            &["--config", "learning_rate=nan"],
            "learning_rate=NaN: must be a number in [0, 1e38]",
        ),
        (
            &["--config", "weight_decay=-1"],
            "weight_decay=-1: must be a number in [0, 1]",
        ),
        (
            &["--config", "num_stacks=99"],
            "num_stacks=99: must be an integer in 1..=8",
        ),
        (&["--config", "nope=1"], "unknown key \"nope\""),
        (
            &["--epochs", "0"],
            "train_epochs=0: must be a number in (0, 100000]",
        ),
        (
            &["--repeats", "0"],
            "--repeats 0: must be an integer in 1..=1000",
        ),
    ];
    // A run of the tiny network on the synthetic set with `args` added.
    let tiny_run = |args: &[&str]| {
        Command::new(BIN)
            .args([
                "train",
                "-q",
                "--matrix",
                "0100",
                "--ops",
                "input,output",
                "--data",
            ])
            .arg(&data)
            .args(TINY)
            .args(args)
            .arg("--db")
            .arg(&db)
            .output()
            .unwrap()
    };
    for (args, message) in cases {
        let o = tiny_run(args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(!db.exists(), "nothing was created for a refused run");
    // Labels beyond num_labels: an error naming the file and the record
    // (the synthetic set's record 1 has label 7).
    let o = tiny_run(&["--config", "num_labels=3"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "data_batch_1.bin: record 1: label 7 is outside 0..=2 (the network has num_labels=3)"
        ),
        "{err}"
    );
}

/// The entries of `dir` whose names end with `.tmp`.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn ingests_killed_at_twenty_moments_leave_the_old_database_byte_identical_or_the_new_one_complete()
{
    let base = tempfile::tempdir().unwrap();
    let file = base.path().join("synth.tfrecord");
    run(Command::new(BIN)
        .args(["synth", "-q", "--only108", "--cells", "3000", "-o"])
        .arg(&file));
    let old = base.path().join("old.duckdb");
    assert!(ingest(&old, &["--no-query-index"]).status.success());
    add_trained_run(&old, false);
    let old_bytes = std::fs::read(&old).unwrap();
    // How long a whole replace of the old database takes here and now
    // (the slowest of three, under whatever else the machine runs).
    let timed = base.path().join("timed.duckdb");
    let mut full = std::time::Duration::ZERO;
    for _ in 0..3 {
        std::fs::write(&timed, &old_bytes).unwrap();
        let started = std::time::Instant::now();
        run(Command::new(BIN)
            .args(["ingest", "-q", "--no-query-index"])
            .arg(&file)
            .arg("--db")
            .arg(&timed));
        full = full.max(started.elapsed());
    }
    let expected_rows = count(&read_only(&timed), "SELECT count(*) FROM evaluations");
    let (mut old_kept, mut new_whole) = (0, 0);
    // Twenty moments from the start to twice that time, then later ones
    // until a run got through (a busy machine can slow the killed runs).
    let mut k = 0u32;
    while k < 20 || (new_whole == 0 && k < 60) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("nb.duckdb");
        std::fs::write(&db, &old_bytes).unwrap();
        let mut child = Command::new(BIN)
            .args(["ingest", "-q", "--no-query-index"])
            .arg(&file)
            .arg("--db")
            .arg(&db)
            .spawn()
            .unwrap();
        std::thread::sleep(full * k / 10);
        k += 1;
        let _ = child.kill();
        child.wait().unwrap();
        let now = std::fs::read(&db).unwrap();
        if now == old_bytes {
            old_kept += 1;
        } else {
            assert!(!wal(&db).exists(), "moment {k}: a log beside the new file");
            let c = read_only(&db);
            assert_eq!(
                count(&c, "SELECT count(*) FROM evaluations"),
                expected_rows,
                "moment {k}"
            );
            assert_eq!(
                count(&c, "SELECT count(*) FROM training_runs"),
                1,
                "moment {k}"
            );
            new_whole += 1;
        }
        // The next ingest removes what the killed one left and completes.
        run(Command::new(BIN)
            .args(["ingest", "-q", "--no-query-index"])
            .arg(&file)
            .arg("--db")
            .arg(&db));
        assert_eq!(which(&db), "new");
        assert!(temporaries(dir.path()).is_empty(), "moment {k}");
    }
    let _ = std::io::Write::write_all(
        &mut std::io::stderr().lock(),
        format!(
            "ingest kill sweep: {k} moments over twice {full:?}: {old_kept} left the old file \
             byte-identical, {new_whole} the new one complete\n"
        )
        .as_bytes(),
    );
    assert!(
        old_kept > 0 && new_whole > 0,
        "the sweep covers both sides of the rename"
    );
}

#[test]
fn a_worker_killed_ten_times_finishes_every_unit_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_cifar(dir.path(), 64);
    let cells = dir.path().join("cells.txt");
    std::fs::write(
        &cells,
        format!("0110000100010000 input,conv3x3-bn-relu,maxpool3x3,output\n{IDENTITY_BITS} {IDENTITY_OPS}\n010001000 input,conv1x1-bn-relu,output\n"),
    )
    .unwrap();
    let out = dir.path().join("out");
    let worker = || {
        let mut c = common::worker_command(Path::new(BIN), &cells, &out, &data);
        c.stderr(std::process::Stdio::null());
        c
    };
    let units = || -> usize {
        std::fs::read_dir(&out).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with("unit-") && n.ends_with(".parquet")
                })
                .count()
        })
    };
    // Ten kills that land while the worker runs, at moments spread over
    // its start-up, its training and its writes.
    let mut kills = 0;
    let mut attempts = 0;
    while kills < 10 && units() < 6 {
        attempts += 1;
        assert!(attempts < 40, "the worker kept finishing before the kill");
        let mut child = worker().spawn().unwrap();
        let ms = [40u64, 120, 250, 400, 600][attempts % 5];
        std::thread::sleep(std::time::Duration::from_millis(ms));
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        let _ = child.kill();
        child.wait().unwrap();
    }
    assert_eq!(kills, 10, "ten kills landed before the units were done");
    run(&mut worker());
    assert_eq!(units(), 6, "3 cells x 2 repeats");
    let db = dir.path().join("w.duckdb");
    for _ in 0..2 {
        run(Command::new(BIN)
            .arg("ingest-runs")
            .arg(&out)
            .arg("--db")
            .arg(&db));
        let c = read_only(&db);
        assert_eq!(count(&c, "SELECT count(*) FROM training_runs"), 6);
        assert_eq!(
            count(
                &c,
                "SELECT count(*) FROM (SELECT DISTINCT hash, repeat FROM training_runs)"
            ),
            6,
            "every (cell, repeat) exactly once"
        );
        assert_eq!(count(&c, "SELECT count(*) FROM evaluations"), 18);
    }
}

#[test]
fn an_index_that_cannot_be_written_is_reported_not_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nb.duckdb");
    // A directory where the index file would go: the rename onto it fails
    // (permissions would not stop root).
    std::fs::create_dir(dir.path().join("nb.duckdb.qidx")).unwrap();
    let o = ingest(&db, &["--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("warning: no query index"), "{err}");
    assert!(err.contains("not written"), "{err}");
    let summary: Value = serde_json::from_str(text(&o.stdout).trim()).unwrap();
    assert_eq!(summary["query_index"], Value::Null);
    // A batch still answers, from memory, and says why.
    let q = batch(&db, &format!("{}\n", REAL_CELLS[1].0));
    assert!(q.status.success(), "{}", text(&q.stderr));
    assert!(
        text(&q.stderr).contains("could not write the index file"),
        "{}",
        text(&q.stderr)
    );
    let first: Value = serde_json::from_str(text(&q.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["module_hash"], REAL_CELLS[1].0);
}
