//! The `nasbench` binary: hash, prune and generate as a user runs them.

use std::fs::File;
use std::process::{Command, Output};

use parquet::file::reader::{FileReader, SerializedFileReader};

const README_BITS: &str = "0111010000000100000010000100000000100000010000000";
const README_OPS: &str =
    "input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output";

fn nasbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nasbench"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn hash_prints_the_dataset_key() {
    let o = nasbench(&["hash", "--matrix", README_BITS, "--ops", README_OPS]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "28cfc7874f6d200472e1a9dcd8650aa0\n");
    // Labels instead of names, JSON instead of bits.
    let o = nasbench(&[
        "hash",
        "--matrix",
        "[[0,1,1,1,0,1,0],[0,0,0,0,0,0,1],[0,0,0,0,0,0,1],[0,0,0,0,1,0,0],[0,0,0,0,0,0,1],[0,0,0,0,0,0,1],[0,0,0,0,0,0,0]]",
        "--ops",
        "-1,1,0,0,0,2,-2",
    ]);
    assert_eq!(stdout(&o), "28cfc7874f6d200472e1a9dcd8650aa0\n");
}

#[test]
fn hash_json_has_parameters() {
    let o = nasbench(&[
        "hash",
        "--matrix",
        README_BITS,
        "--ops",
        README_OPS,
        "--json",
    ]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["hash"], "28cfc7874f6d200472e1a9dcd8650aa0");
    assert_eq!(v["trainable_parameters"], 2694282);
    assert_eq!(v["num_edges"], 9);
    assert!(v["domain_error"].is_null());
}

#[test]
fn invalid_cells_exit_non_zero_with_the_original_message() {
    let o = nasbench(&["hash", "--matrix", "0000", "--ops", "input,output"]);
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o),
        "error: invalid spec, provided graph is disconnected.\n"
    );
    let o = nasbench(&[
        "hash",
        "--matrix",
        "0100",
        "--ops",
        "input,output",
        "--json",
    ]);
    assert!(o.status.success());
    let o = nasbench(&["hash", "--matrix", "010", "--ops", "input,output"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("matrix: bit string has 3 bits"),
        "{}",
        stderr(&o)
    );
    let o = nasbench(&[
        "hash",
        "--matrix",
        "0110",
        "--ops",
        "input,output",
        "--json",
    ]);
    assert!(!o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["error"], "matrix must be upper triangular");
    let o = nasbench(&[
        "hash",
        "--matrix",
        "010001000",
        "--ops",
        "input,identity,output",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unsupported op identity"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn out_of_space_cells_hash_with_a_note() {
    // 8-vertex chain: hashable, but not in the dataset.
    let mut bits = String::new();
    for i in 0..8 {
        for j in 0..8 {
            bits.push(if j == i + 1 { '1' } else { '0' });
        }
    }
    let o = nasbench(&["hash", "--matrix", &bits, "--ops", "-1,0,0,0,0,0,0,-2"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim().len(), 32);
    assert!(stderr(&o).contains("too many vertices, got 8 (max vertices = 7)"));
}

#[test]
fn prune_round_trips() {
    let o = nasbench(&[
        "prune",
        "--matrix",
        "0100 0001 0000 0000",
        "--ops",
        "input,conv3x3-bn-relu,maxpool3x3,output",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "010001000 input,conv3x3-bn-relu,output\n");
    let o = nasbench(&[
        "prune",
        "--matrix",
        "0100 0001 0000 0000",
        "--ops",
        "-1,0,2,-2",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v["matrix"],
        serde_json::json!([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    );
    assert_eq!(v["removed_vertices"], serde_json::json!([2]));
    let o = nasbench(&[
        "prune",
        "--matrix",
        "0100 0000 0001 0000",
        "--ops",
        "-1,0,2,-2",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("disconnected"));
}

#[test]
fn generate_writes_parquet_and_prints_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cells.parquet");
    let o = nasbench(&[
        "generate",
        "--max-vertices",
        "5",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(table.lines().any(|l| l == "5\t121\t3267\t2532"), "{table}");
    assert!(
        stderr(&o).contains("2532 cells from 3364 labeled graphs"),
        "{}",
        stderr(&o)
    );

    let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
    let meta = reader.metadata();
    assert_eq!(meta.file_metadata().num_rows(), 2532);
    let names: Vec<String> = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.path().string())
        .collect();
    assert_eq!(
        names,
        [
            "hash",
            "num_vertices",
            "num_edges",
            "adjacency",
            "ops.list.item",
            "trainable_parameters"
        ]
    );
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn failed_generate_leaves_an_existing_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cells.parquet");
    std::fs::write(&path, b"earlier output").unwrap();
    let o = nasbench(&[
        "generate",
        "--max-vertices",
        "9",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--max-vertices must be between 2 and 7, got 9"));
    assert_eq!(std::fs::read(&path).unwrap(), b"earlier output");
    let o = nasbench(&[
        "generate",
        "--max-vertices",
        "3",
        "-o",
        "/nonexistent-dir/cells.parquet",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("/nonexistent-dir/cells.parquet"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_teaches() {
    let o = nasbench(&["--help"]);
    let h = stdout(&o);
    for word in ["generate", "hash", "prune", "Examples:"] {
        assert!(h.contains(word), "{h}");
    }
    let o = nasbench(&["generate", "--help"]);
    assert!(stdout(&o).contains("423,624"));
}
