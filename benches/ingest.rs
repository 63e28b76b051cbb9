//! Ingest benchmark: synthesizes release-sized files once (cached beside the
//! build), reads each once (so that it is in the page cache), then times
//! `nasbench ingest` on it and prints wall time, records/s and peak RSS (as
//! the child process reports it).
//!
//! `cargo bench --bench ingest` runs both sizes; `-- only108` or `-- full`
//! one of them. The cache lives in `<target>/nasbench-bench/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_nasbench");

fn cache_dir() -> PathBuf {
    // <target>/release/nasbench -> <target>/nasbench-bench
    let bin = Path::new(BIN);
    let target = bin
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| Path::new("."));
    target.join("nasbench-bench")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running nasbench");
    if !out.status.success() {
        panic!("{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).expect("creating the bench cache");
    for (name, flag, records) in [
        ("only108", "--only108", 1_270_872u64),
        ("full", "--full", 5_083_488),
    ] {
        if !which.is_empty() && !which.iter().any(|w| w == name) {
            continue;
        }
        let file = dir.join(format!("synthetic_{name}.tfrecord"));
        if !file.exists() {
            eprintln!("synthesizing {} (once; cached)", file.display());
            let t = Instant::now();
            run(Command::new(BIN)
                .args(["synth", flag, "-q", "-o"])
                .arg(&file));
            eprintln!("  {:.1} s", t.elapsed().as_secs_f64());
        }
        // Read once before timing, so that the input is in the page cache:
        // this machine's proactive reclaim (DAMON `pageout` of what was not
        // touched for a minute) evicts it during a long build, and a first
        // run then also timed the disk (only108: 3.4-3.7 s instead of 2.8).
        let t = Instant::now();
        let mut input = std::fs::File::open(&file).expect("opening the cached file");
        let bytes =
            std::io::copy(&mut input, &mut std::io::sink()).expect("reading the cached file");
        eprintln!(
            "read {} once first, into the page cache ({:.2} s)",
            file.display(),
            t.elapsed().as_secs_f64()
        );
        let db = dir.join(format!("bench_{name}.duckdb"));
        let t = Instant::now();
        let json = run(Command::new(BIN)
            .args(["ingest", "-q", "--json", "--db"])
            .arg(&db)
            .arg(&file));
        let wall = t.elapsed().as_secs_f64();
        let v: serde_json::Value = serde_json::from_str(&json).expect("ingest --json output");
        assert_eq!(v["records"].as_u64(), Some(records), "{json}");
        let to_db = v["seconds"].as_f64().unwrap_or(f64::NAN);
        let rss = v["peak_rss_bytes"].as_u64().unwrap_or(0);
        let db_bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        println!(
            "ingest {name:8} {records} records, {:.0} MB: wall {wall:.2} s (process), {:.2} s to the finished database, then {:.2} s for the query index; {:.0} records/s and {:.0} MB/s to the database, peak RSS {} MB, database {} MB",
            bytes as f64 / 1e6,
            to_db,
            v["query_index_seconds"].as_f64().unwrap_or(f64::NAN),
            records as f64 / to_db,
            bytes as f64 / 1e6 / to_db,
            rss >> 20,
            db_bytes >> 20,
        );
        let _ = std::fs::remove_file(&db);
        let mut index = db.into_os_string();
        index.push(".qidx");
        let _ = std::fs::remove_file(index);
    }
}
