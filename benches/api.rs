//! Query API benchmark on a full-size synthetic database: `cargo bench --bench api`.
//!
//! Prints, on this machine:
//! - one-shot `nasbench query` from a cold process (new process, data in
//!   the page cache), lazy (no index) and with the index: wall and peak RSS;
//!   and with the index, database and index evicted from the page cache
//!   (by hash and by spec);
//! - the one-time index build (wall, peak RSS);
//! - `NasBench::in_memory` open of the full dataset in a fresh process:
//!   wall and peak RSS;
//! - `query()` throughput on one core: by spec (pruning and domain check
//!   included, specs given in a random isomorphic form, found by canonical
//!   key), by spec through the MD5 hash, and by hash alone.
//!
//! The database is built once from the ingest bench's synthetic full file
//! and cached in `<target>/nasbench-bench/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use nasbench::api::NasBench;
use nasbench::cell::graph::ModelHash;
use nasbench::cell::spec::ModelSpec;

const BIN: &str = env!("CARGO_BIN_EXE_nasbench");
const README_HASH: &str = "28cfc7874f6d200472e1a9dcd8650aa0";
const README_BITS: &str = "0111010000000100000010000100000000100000010000000";
const README_OPS: &str =
    "input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output";

fn cache_dir() -> PathBuf {
    let bin = Path::new(BIN);
    bin.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| Path::new("."))
        .join("nasbench-bench")
}

/// Runs a command; returns (wall seconds, peak RSS bytes it reported).
fn timed(cmd: &mut Command) -> (f64, u64) {
    let t = Instant::now();
    let out = cmd
        .env("NASBENCH_PEAK_RSS", "1")
        .output()
        .expect("running nasbench");
    let wall = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed:\n{err}");
    let rss = err
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_bytes="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (wall, rss)
}

/// Median wall and the largest RSS of `n` runs.
fn repeat(n: usize, mut make: impl FnMut() -> Command) -> (f64, u64) {
    let mut walls = Vec::new();
    let mut rss = 0;
    for _ in 0..n {
        let (w, r) = timed(&mut make());
        walls.push(w);
        rss = rss.max(r);
    }
    walls.sort_by(f64::total_cmp);
    (walls[n / 2], rss)
}

fn mb(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        child(Path::new(&args[pos + 1]));
        return;
    }
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).expect("creating the bench cache");
    let file = dir.join("synthetic_full.tfrecord");
    if !file.exists() {
        eprintln!("synthesizing {} (once; cached)", file.display());
        timed(
            Command::new(BIN)
                .args(["synth", "--full", "-q", "-o"])
                .arg(&file),
        );
    }
    let db = dir.join("api_full.duckdb");
    if !db.exists() {
        eprintln!("ingesting {} (once; cached)", file.display());
        timed(
            Command::new(BIN)
                .args(["ingest", "-q", "--db"])
                .arg(&db)
                .arg(&file),
        );
    }
    let mut index = db.as_os_str().to_owned();
    index.push(".qidx");
    let _ = std::fs::remove_file(&index);

    let one_shot = || {
        let mut c = Command::new(BIN);
        c.args(["query", "--seed", "1", "--hash", README_HASH, "--db"])
            .arg(&db);
        c
    };
    let (wall, rss) = repeat(5, one_shot);
    println!(
        "one-shot query, lazy (no index), cold process: {:.0} ms wall (median of 5), {:.0} MB peak RSS",
        wall * 1e3,
        mb(rss)
    );
    let (wall, rss) = timed(
        Command::new(BIN)
            .args(["query", "--batch", "/dev/null", "--db"])
            .arg(&db),
    );
    println!(
        "index build (once per database; ingest does it unless --no-query-index): {wall:.2} s wall, {:.0} MB peak RSS, index file {:.0} MB",
        mb(rss),
        mb(std::fs::metadata(&index).map_or(0, |m| m.len()))
    );
    let (wall, rss) = repeat(5, one_shot);
    println!(
        "one-shot query, with the index, cold process: {:.0} ms wall (median of 5), {:.0} MB peak RSS",
        wall * 1e3,
        mb(rss)
    );
    // Disk-cold: the database and its index dropped from the page cache
    // first (the binary stays cached), for a hash and for a spec.
    let one_spec = || {
        let mut c = Command::new(BIN);
        c.args([
            "query",
            "--seed",
            "1",
            "--matrix",
            README_BITS,
            "--ops",
            README_OPS,
            "--db",
        ])
        .arg(&db);
        c
    };
    let index_path = PathBuf::from(&index);
    for (what, make) in [
        ("hash", &one_shot as &dyn Fn() -> Command),
        ("spec", &one_spec),
    ] {
        let (wall, rss) = repeat(9, || {
            evict(&db);
            evict(&index_path);
            make()
        });
        println!(
            "one-shot query by {what}, with the index, database and index evicted from the page cache: {:.1} ms wall (median of 9), {:.0} MB peak RSS",
            wall * 1e3,
            mb(rss)
        );
    }
    // Back into the page cache for the throughput loops.
    std::fs::read(&index_path).expect("reading the index");
    let out = Command::new(&args[0])
        .arg("--child")
        .arg(&db)
        .output()
        .expect("running the bench child");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Drops `path` from the page cache (POSIX_FADV_DONTNEED), so the next
/// read of it comes from the disk.
fn evict(path: &Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).expect("opening for eviction");
    // SAFETY: a valid descriptor; the advice changes no memory of ours.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise {}", path.display());
}

/// A fresh process: open in memory, then the throughput loops.
fn child(db: &Path) {
    let t = Instant::now();
    let mut nb = NasBench::in_memory(db, Some(1)).expect("open in memory");
    let open = t.elapsed().as_secs_f64();
    let rss = nasbench::peak_rss_bytes().unwrap_or(0);
    let ix = nb.index().expect("in memory");
    let cells = ix.len();
    println!(
        "open in memory (index mapped), {cells} cells: {:.1} ms wall, {:.0} MB peak RSS of the process",
        open * 1e3,
        mb(rss)
    );

    // Random cells, each in a random isomorphic form (interior vertices
    // shuffled, kept upper triangular by sorting topologically).
    let mut rng = nasbench::api::SplitMix64::new(42);
    let n_specs = 200_000;
    let mut specs = Vec::with_capacity(n_specs);
    let mut hashes: Vec<ModelHash> = Vec::with_capacity(n_specs);
    for _ in 0..n_specs {
        let i = rng.below(cells as u64) as usize;
        let f = ix.fixed(i);
        hashes.push(f.hash);
        let m = f.module_adjacency();
        let n = m.n();
        let ops = f.module_operations();
        // A random topological order of the interior vertices.
        let mut order: Vec<usize> = vec![0];
        let mut placed = vec![false; n];
        placed[0] = true;
        while order.len() < n - 1 {
            let ready: Vec<usize> = (1..n - 1)
                .filter(|&v| !placed[v] && (0..n).all(|u| !m.get(u, v) || placed[u]))
                .collect();
            let v = ready[rng.below(ready.len() as u64) as usize];
            placed[v] = true;
            order.push(v);
        }
        order.push(n - 1);
        let matrix: Vec<Vec<i64>> = order
            .iter()
            .map(|&u| order.iter().map(|&v| i64::from(m.get(u, v))).collect())
            .collect();
        let ops: Vec<String> = order.iter().map(|&v| ops[v].to_string()).collect();
        specs.push(ModelSpec::new(&matrix, ops).expect("a permuted cell is a spec"));
    }

    let t = Instant::now();
    let mut acc = 0.0;
    for s in &specs {
        acc += nb
            .query(s, 108, false)
            .expect("query")
            .point
            .training_time
            .unwrap_or(0.0);
    }
    let by_spec = specs.len() as f64 / t.elapsed().as_secs_f64();
    println!(
        "query(spec) in memory, 1 core (prune + check + canonical key + sample): {by_spec:.0} queries/s"
    );

    let t = Instant::now();
    let n_md5 = 20_000;
    for s in &specs[..n_md5] {
        let h = s.hash().expect("hash");
        acc += nb
            .query_hash(&h, 108, false)
            .expect("query")
            .point
            .training_time
            .unwrap_or(0.0);
    }
    let by_md5 = n_md5 as f64 / t.elapsed().as_secs_f64();
    println!("query via the MD5 hash (spec.hash() + query_hash), 1 core: {by_md5:.0} queries/s");

    // Queries per second of ten passes over `hashes`.
    let mut timed_passes = |hashes: &[ModelHash]| {
        let t = Instant::now();
        for _ in 0..10 {
            for h in hashes {
                acc += nb
                    .query_hash(h, 108, false)
                    .expect("query")
                    .point
                    .training_time
                    .unwrap_or(0.0);
            }
        }
        10.0 * hashes.len() as f64 / t.elapsed().as_secs_f64()
    };
    let by_hash = timed_passes(&hashes);
    // The same hashes in index order: what the lookups cost when the data
    // they touch is in cache (random order is bound by memory latency).
    let random = hashes.clone();
    hashes.sort_unstable();
    let sorted = timed_passes(&hashes);
    // The same queries through the pipelined batch call, a population of
    // 1,000 at a time.
    let t = Instant::now();
    for _ in 0..10 {
        for chunk in random.chunks(1000) {
            for r in nb.query_hashes(chunk, 108, false) {
                acc += r.expect("query").point.training_time.unwrap_or(0.0);
            }
        }
    }
    let batched = 10.0 * hashes.len() as f64 / t.elapsed().as_secs_f64();
    println!("query_hash in memory, 1 core, random cells: {by_hash:.0} queries/s");
    println!(
        "query_hashes (pipelined batch of 1,000) in memory, 1 core, random cells: {batched:.0} queries/s"
    );
    println!(
        "query_hash in memory, 1 core, cells in index order: {sorted:.0} queries/s (checksum {acc:.1})"
    );
}
