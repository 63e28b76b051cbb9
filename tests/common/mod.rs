//! Helpers shared by the integration tests: fixtures and small constructors.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use nasbench::cell::spec::ModelSpec;

/// The repository root.
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A program of the project virtualenv `.venv` (made by `.ci/run`), if any.
pub fn venv_bin(name: &str) -> Option<PathBuf> {
    let p = Path::new(ROOT).join(".venv/bin").join(name);
    p.exists().then_some(p)
}

/// Runs a command that must succeed; returns its stdout.
pub fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Builds the loadable extension (`extension/`, in the dev profile of the
/// target directory the tests run from, so that it reuses the dependencies
/// they compiled) and packages it with `bin package-extension` into `dir`.
pub fn build_extension(dir: &Path, bin: &Path) -> PathBuf {
    let target = bin.parent().and_then(Path::parent).unwrap();
    run(Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--manifest-path"])
        .arg(Path::new(ROOT).join("extension/Cargo.toml"))
        .env("CARGO_TARGET_DIR", target));
    let ext = dir.join("nasbench.duckdb_extension");
    run(Command::new(bin)
        .arg("package-extension")
        .arg(target.join("debug/libnasbench.so"))
        .arg("-o")
        .arg(&ext));
    ext
}

/// One row of `tests/fixtures/graphs_sample.tsv` (a reference run of the
/// original enumeration).
pub struct SampleRow {
    pub hash: String,
    pub vertices: usize,
    pub edges: usize,
    pub bits: String,
    pub labels: Vec<i64>,
}

/// All rows of the reference sample.
pub fn sample_rows() -> Vec<SampleRow> {
    let text = include_str!("../fixtures/graphs_sample.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 5, "bad fixture line {l:?}");
            SampleRow {
                hash: f[0].to_string(),
                vertices: f[1].parse().unwrap(),
                edges: f[2].parse().unwrap(),
                bits: f[3].to_string(),
                labels: f[4].split(',').map(|x| x.parse().unwrap()).collect(),
            }
        })
        .collect()
}

/// A spec from integer rows and op names.
pub fn spec(matrix: &[&[i64]], ops: &[&str]) -> ModelSpec {
    let m: Vec<Vec<i64>> = matrix.iter().map(|r| r.to_vec()).collect();
    ModelSpec::new(&m, ops.iter().map(|s| s.to_string()).collect()).unwrap()
}

/// Real NAS-Bench-101 records (tests/fixtures/nasbench_real_sample.tfrecord):
/// hash, stored adjacency, stored ops, trainable parameters.
pub const REAL_CELLS: [(&str, &str, &str, u64); 3] = [
    (
        "28cfc7874f6d200472e1a9dcd8650aa0",
        "0111100000000100000010000001000001000000010000000",
        "input,conv3x3-bn-relu,conv1x1-bn-relu,maxpool3x3,conv3x3-bn-relu,conv3x3-bn-relu,output",
        2694282,
    ),
    (
        "00005c142e6f48ac74fdcf73e3439874",
        "0100110001000000010010000010000001000000010000000",
        "input,conv3x3-bn-relu,maxpool3x3,conv3x3-bn-relu,conv3x3-bn-relu,conv1x1-bn-relu,output",
        8555530,
    ),
    (
        "00019e2cbab0bc93ca1a7816a099b2bd",
        "0101000001011000000010000100000001000000010000000",
        "input,maxpool3x3,conv3x3-bn-relu,maxpool3x3,conv1x1-bn-relu,maxpool3x3,output",
        3468426,
    ),
];

/// Says on the terminal, even under the test harness's output capture,
/// that a check was skipped and why.
pub fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {why}");
}

/// The tiny training options of the tests: 16x16 images, stem 16, one
/// stack of one module, batch 32.
pub const TINY_TRAIN: [&str; 10] = [
    "--config",
    "stem_filter_size=16",
    "--config",
    "num_stacks=1",
    "--config",
    "num_modules_per_stack=1",
    "--config",
    "image_size=16",
    "--config",
    "batch_size=32",
];

/// The `unit-*.parquet` files a worker wrote into `out`, sorted.
pub fn unit_files(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("unit-") && n.ends_with(".parquet"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `nasbench worker` (`bin`) as the only worker of `cells`, 2 repeats of 2
/// epochs of the tiny network on the synthetic set in `data`, units in `out`.
pub fn worker_command(bin: &Path, cells: &Path, out: &Path, data: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args(["worker", "-q", "--worker-id", "0", "--total-workers", "1"])
        .args(["--repeats", "2", "--epochs", "2", "--cells"])
        .arg(cells)
        .arg("--out")
        .arg(out)
        .arg("--data")
        .arg(data)
        .args(TINY_TRAIN);
    c
}
