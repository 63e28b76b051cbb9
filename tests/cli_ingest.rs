//! The `nasbench` binary's data commands as a user runs them: ingest, synth, demo, and fetch against a local HTTP server.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use duckdb::Connection;
use sha2::{Digest, Sha256};

const SAMPLE: &[u8] = include_bytes!("fixtures/nasbench_real_sample.tfrecord");

fn nasbench(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nasbench"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn count(db: &Path, sql: &str) -> i64 {
    Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

#[test]
fn ingest_writes_database_parquet_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sample.tfrecord"), SAMPLE).unwrap();
    let o = nasbench(
        dir.path(),
        &[
            "ingest",
            "sample.tfrecord",
            "--db",
            "s.duckdb",
            "--parquet",
            "pq",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("18 records -> 3 cells, 18 runs, 54 evaluations (budgets 4, 12, 36, 108)"),
        "{err}"
    );
    assert!(err.contains("2 cells lack a budget"), "{err}");
    assert!(o.stdout.is_empty(), "text summary goes to stderr");
    assert_eq!(
        count(&dir.path().join("s.duckdb"), "SELECT count(*) FROM runs"),
        18
    );
    assert!(dir.path().join("pq/models.parquet").exists());
    assert!(dir.path().join("pq/evaluations.parquet").exists());

    let o = nasbench(
        dir.path(),
        &[
            "ingest",
            "sample.tfrecord",
            "--db",
            "s.duckdb",
            "--json",
            "-q",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["cells"].as_u64(), v["evaluations"].as_u64()),
        (Some(3), Some(54))
    );
    assert_eq!(v["anomalies"]["cells_missing_budgets"].as_u64(), Some(2));

    // The query index is built with the database, fresh for it, so a
    // one-shot query maps it instead of scanning DuckDB.
    let index = dir.path().join("s.duckdb.qidx");
    assert_eq!(v["query_index"].as_str(), Some("s.duckdb.qidx"));
    let (source, at) = nasbench::api::index_location(&dir.path().join("s.duckdb")).unwrap();
    assert_eq!(at, index);
    assert!(
        nasbench::api::Index::open_fresh(&index, &source)
            .unwrap()
            .is_some(),
        "the index is stale or unreadable"
    );
    let o = nasbench(
        dir.path(),
        &[
            "ingest",
            "sample.tfrecord",
            "--db",
            "t.duckdb",
            "--json",
            "-q",
            "--no-query-index",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["query_index"].is_null());
    assert!(!dir.path().join("t.duckdb.qidx").exists());
}

#[test]
fn ingest_errors_name_file_record_and_offset_and_keep_the_old_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.tfrecord"), SAMPLE).unwrap();
    let o = nasbench(
        dir.path(),
        &["ingest", "good.tfrecord", "--db", "d.duckdb", "-q"],
    );
    assert!(o.status.success());
    let before = std::fs::read(dir.path().join("d.duckdb")).unwrap();
    let mut bad = SAMPLE.to_vec();
    bad.truncate(SAMPLE.len() - 3);
    std::fs::write(dir.path().join("bad.tfrecord"), &bad).unwrap();
    let o = nasbench(
        dir.path(),
        &["ingest", "bad.tfrecord", "--db", "d.duckdb", "-q"],
    );
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("d.duckdb was not changed"), "{err}");
    assert!(err.contains("bad.tfrecord: record 17 at byte"), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert_eq!(std::fs::read(dir.path().join("d.duckdb")).unwrap(), before);

    let o = nasbench(
        dir.path(),
        &["ingest", "missing.tfrecord", "--db", "d.duckdb"],
    );
    assert!(
        text(&o.stderr).contains("missing.tfrecord: No such file"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn synth_then_ingest_marks_rows_synthetic() {
    let dir = tempfile::tempdir().unwrap();
    let o = nasbench(
        dir.path(),
        &[
            "synth",
            "--full",
            "--cells",
            "50",
            "-q",
            "-o",
            "syn.tfrecord",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("wrote 600 synthetic records"),
        "{}",
        text(&o.stderr)
    );
    let o = nasbench(
        dir.path(),
        &["ingest", "syn.tfrecord", "--db", "syn.duckdb", "-q"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("600 runs are synthetic"),
        "{}",
        text(&o.stderr)
    );
    let db = dir.path().join("syn.duckdb");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM evaluations WHERE source <> 'synthetic'"
        ),
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM model_stats WHERE repeats = 3"),
        200
    );
}

#[test]
fn demo_builds_the_database_and_prints_the_ranking() {
    let dir = tempfile::tempdir().unwrap();
    let o = nasbench(dir.path(), &["demo", "-q"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    // The three real cells at 108 epochs, ranked by mean validation accuracy.
    let rank: Vec<usize> = [
        "28cfc7874f6d200472e1a9dcd8650aa0",
        "00005c142e6f48ac74fdcf73e3439874",
        "00019e2cbab0bc93ca1a7816a099b2bd",
    ]
    .iter()
    .map(|h| out.find(h).unwrap_or_else(|| panic!("{h} missing:\n{out}")))
    .collect();
    let db = dir.path().join("nasbench-demo.duckdb");
    // The order printed is the order of the mean final validation accuracy.
    let best: String = Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT hash FROM model_stats WHERE epochs = 108 ORDER BY mean_final_validation_accuracy DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(out.find(&best), rank.iter().min().copied());
    assert_eq!(count(&db, "SELECT count(*) FROM cells"), 423_624);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM models JOIN cells USING (hash, adjacency, trainable_parameters)"
        ),
        3,
        "the real cells are in the generated space in the same canonical form"
    );
    assert!(
        text(&o.stderr).contains("3 of them have runs in the sample"),
        "{}",
        text(&o.stderr)
    );
}

/// A one-file HTTP/1.1 server on 127.0.0.1 that honours `Range: bytes=N-`
/// and records the Range headers it was sent.
fn serve(body: Vec<u8>) -> (String, Arc<Mutex<Vec<Option<usize>>>>) {
    serve_stalling(body, usize::MAX, 0)
}

#[test]
fn fetch_resumes_verifies_and_ingests() {
    let sha: String = Sha256::digest(SAMPLE)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (url, seen) = serve(SAMPLE.to_vec());
    let dir = tempfile::tempdir().unwrap();
    // A previous download broke off after 1000 bytes.
    std::fs::write(
        dir.path().join("nasbench_sample.tfrecord.part"),
        &SAMPLE[..1000],
    )
    .unwrap();
    let o = nasbench(
        dir.path(),
        &[
            "fetch", "--url", &url, "--sha256", &sha, "--db", "f.duckdb", "-q",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("resumed at byte 1000"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(seen.lock().unwrap().as_slice(), [Some(1000)]);
    assert_eq!(
        std::fs::read(dir.path().join("nasbench_sample.tfrecord")).unwrap(),
        SAMPLE
    );
    assert!(!dir.path().join("nasbench_sample.tfrecord.part").exists());
    assert_eq!(
        count(&dir.path().join("f.duckdb"), "SELECT count(*) FROM runs"),
        18
    );

    // Present and verified: no second download.
    let o = nasbench(
        dir.path(),
        &[
            "fetch",
            "--url",
            &url,
            "--sha256",
            &sha,
            "--no-ingest",
            "-q",
        ],
    );
    assert!(
        text(&o.stderr).contains("is present and verified"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn fetch_rejects_a_wrong_checksum_and_keeps_nothing() {
    let (url, _) = serve(SAMPLE.to_vec());
    let dir = tempfile::tempdir().unwrap();
    let wrong = "0".repeat(64);
    let o = nasbench(
        dir.path(),
        &["fetch", "--url", &url, "--sha256", &wrong, "-q"],
    );
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains(&format!("expected {wrong}")), "{err}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing left behind"
    );
}

#[test]
fn interrupted_ingest_leaves_no_temporaries_and_the_old_database() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("good.tfrecord"), SAMPLE).unwrap();
    assert!(
        nasbench(d, &["ingest", "-q", "good.tfrecord", "--db", "i.duckdb"])
            .status
            .success()
    );
    let before = std::fs::read(d.join("i.duckdb")).unwrap();
    // A file large enough that the ingest is still running when interrupted.
    let o = nasbench(
        d,
        &[
            "synth",
            "--full",
            "--cells",
            "30000",
            "-q",
            "-o",
            "big.tfrecord",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let child = Command::new(env!("CARGO_BIN_EXE_nasbench"))
        .current_dir(d)
        .args(["ingest", "-q", "big.tfrecord", "--db", "i.duckdb"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the temporary database exists, then send SIGINT.
    let started = std::time::Instant::now();
    while !std::fs::read_dir(d)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".tmp"))
    {
        assert!(
            started.elapsed().as_secs() < 60,
            "no temporary database appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("interrupted"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(d.join("i.duckdb")).unwrap(), before);
    let left: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporaries left: {left:?}");
}

/// An HTTP server on 127.0.0.1 that may misbehave: its first answer sends
/// `cut` bytes and then goes silent, the next `silent` answers send their
/// headers and nothing more, and later ones honour `Range: bytes=N-` (a
/// range past the end gets the whole file). It records the ranges asked.
/// Each connection has its own thread; silent ones are held for 30 s.
fn serve_stalling(
    body: Vec<u8>,
    cut: usize,
    silent: usize,
) -> (String, Arc<Mutex<Vec<Option<usize>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/nasbench_sample.tfrecord",
        listener.local_addr().unwrap()
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let body = Arc::new(body);
    std::thread::spawn(move || {
        for (k, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let (body, log) = (body.clone(), log.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut range = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        range = v.trim().trim_end_matches('-').parse::<usize>().ok();
                    }
                }
                log.lock().unwrap().push(range);
                let from = range.filter(|&r| r < body.len()).unwrap_or(0);
                let part = &body[from..];
                let status = if from > 0 {
                    "206 Partial Content"
                } else {
                    "200 OK"
                };
                let mut head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                    part.len()
                );
                if from > 0 {
                    head += &format!(
                        "Content-Range: bytes {from}-{}/{}\r\n",
                        body.len() - 1,
                        body.len()
                    );
                }
                head += "\r\n";
                let _ = stream.write_all(head.as_bytes());
                let sent = match k {
                    0 => cut.min(part.len()),
                    k if k <= silent => 0,
                    _ => part.len(),
                };
                let _ = stream.write_all(&part[..sent]);
                let _ = stream.flush();
                if sent < part.len() {
                    std::thread::sleep(std::time::Duration::from_secs(30));
                }
            });
        }
    });
    (url, seen)
}

/// `nasbench fetch --no-ingest` of `url` into `dir`, with `extra` options.
fn fetch_only(dir: &Path, url: &str, sha: &str, extra: &[&str]) -> Output {
    let mut args = vec!["fetch", "--url", url, "--sha256", sha, "--no-ingest", "-q"];
    args.extend_from_slice(extra);
    nasbench(dir, &args)
}

#[test]
fn fetch_survives_a_stalled_transfer_and_resumes_it() {
    let sha: String = Sha256::digest(SAMPLE)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (url, seen) = serve_stalling(SAMPLE.to_vec(), 3000, 1);
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let o = fetch_only(dir.path(), &url, &sha, &["--stall-timeout", "0.5"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    // The stall is noticed within its window, not when the server lets go
    // of the connection after 30 s.
    assert!(
        started.elapsed().as_secs_f64() < 20.0,
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains("retrying from byte 3000"), "{err}");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [None, Some(3000), Some(3000)]
    );
    assert_eq!(
        std::fs::read(dir.path().join("nasbench_sample.tfrecord")).unwrap(),
        SAMPLE
    );
}

#[test]
fn fetch_gives_up_on_a_dead_server_and_keeps_what_it_got() {
    let (url, seen) = serve_stalling(SAMPLE.to_vec(), 2000, 1000);
    let dir = tempfile::tempdir().unwrap();
    let sha = "0".repeat(64);
    let o = fetch_only(
        dir.path(),
        &url,
        &sha,
        &["--stall-timeout", "0.3", "--retries", "2"],
    );
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no progress after 3 attempts"), "{err}");
    assert!(err.contains("rerun to resume from byte 2000"), "{err}");
    assert_eq!(
        seen.lock().unwrap().len(),
        4,
        "one answer with data, three silent"
    );
    let part = std::fs::read(dir.path().join("nasbench_sample.tfrecord.part")).unwrap();
    assert_eq!(part, &SAMPLE[..2000]);
}
