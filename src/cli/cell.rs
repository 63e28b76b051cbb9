//! `nasbench hash` and `nasbench prune`: one cell in, its dataset hash or pruned form out.

use std::io::Write;
use std::process::ExitCode;

use nasbench::cell::network::{NetworkConfig, trainable_parameters};
use nasbench::cell::parse::{parse_matrix, parse_ops};
use nasbench::cell::spec::{Domain, ModelSpec};
use serde_json::json;

/// The cell arguments shared by `hash` and `prune`.
#[derive(clap::Args, Debug)]
pub struct CellArgs {
    /// Adjacency matrix: row-major bits (`0110000100010000`, spaces between
    /// rows allowed) or a JSON nested list (`[[0,1,1,0],[0,0,0,1],...]`).
    #[arg(short, long, value_name = "MATRIX", allow_hyphen_values = true)]
    matrix: String,
    /// Ops, one per vertex: names (`input,conv3x3-bn-relu,output`), hash
    /// labels (`-1,0,-2`), or a JSON list.
    #[arg(short, long, value_name = "OPS", allow_hyphen_values = true)]
    ops: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Print the dataset hash of a cell (after pruning).
///
/// The hash is the key under which NAS-Bench-101 stores the cell; any
/// isomorphic form of the cell gives the same hash. Exits non-zero, with the
/// original's message, when the cell is invalid (input does not reach
/// output) or uses an op outside the dataset. A cell outside the dataset's
/// limits (more than 7 vertices or 9 edges) still hashes; a note on stderr
/// (and `domain_error` in JSON) says so.
#[derive(clap::Args, Debug)]
pub struct HashArgs {
    #[command(flatten)]
    cell: CellArgs,
}

/// Print the pruned form of a cell: vertices not on an input -> output path
/// removed, as the original ModelSpec does.
///
/// Text output is one line, `BITS OPS`, which `hash` and `prune` accept
/// back. Exits non-zero when the input does not reach the output.
#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    #[command(flatten)]
    cell: CellArgs,
}

/// Parses and builds the spec; the error is the one to show the user.
fn build(a: &CellArgs) -> Result<ModelSpec, String> {
    let matrix = parse_matrix(&a.matrix).map_err(|e| e.to_string())?;
    let ops = parse_ops(&a.ops).map_err(|e| e.to_string())?;
    ModelSpec::new(&matrix, ops).map_err(|e| e.to_string())
}

/// Reports a failure in the requested format and returns exit code 1.
fn fail(json: bool, message: &str, extra: serde_json::Value) -> anyhow::Result<ExitCode> {
    if json {
        let mut v = extra;
        v["error"] = json!(message);
        writeln!(std::io::stdout().lock(), "{v}")?;
    } else {
        eprintln!("error: {message}");
    }
    Ok(ExitCode::FAILURE)
}

pub fn hash(a: HashArgs) -> anyhow::Result<ExitCode> {
    let a = a.cell;
    let spec = match build(&a) {
        Ok(s) => s,
        Err(e) => return fail(a.json, &e, json!({})),
    };
    let hash = match spec.hash() {
        Ok(h) => h,
        Err(e) => return fail(a.json, &e.to_string(), json!({})),
    };
    let domain_error = spec.check(&Domain::default()).err().map(|e| e.to_string());
    let (matrix, ops) = spec
        .matrix()
        .zip(spec.ops())
        .ok_or_else(|| anyhow::anyhow!("hashed spec has no pruned form"))?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let params = trainable_parameters(&spec, &NetworkConfig::default()).ok();
        let v = json!({
            "hash": hash.to_string(),
            "adjacency": matrix.to_bit_string(),
            "matrix": matrix.to_nested(),
            "ops": ops,
            "num_vertices": matrix.n(),
            "num_edges": matrix.num_edges(),
            "trainable_parameters": params,
            "domain_error": domain_error,
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "{hash}")?;
        if let Some(e) = domain_error {
            eprintln!("note: outside the NAS-Bench-101 space: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn prune(a: PruneArgs) -> anyhow::Result<ExitCode> {
    let a = a.cell;
    let spec = match build(&a) {
        Ok(s) => s,
        Err(e) => return fail(a.json, &e, json!({})),
    };
    let Some((matrix, ops)) = spec.matrix().zip(spec.ops()) else {
        return fail(
            a.json,
            "invalid spec, provided graph is disconnected.",
            json!({"valid": false}),
        );
    };
    let n = spec.original_matrix().n();
    let removed: Vec<usize> = match nasbench::cell::spec::kept_vertices(spec.original_matrix()) {
        Some(keep) => (0..n).filter(|v| (keep >> v) & 1 == 0).collect(),
        None => (0..n).collect(),
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        let v = json!({
            "valid": true,
            "adjacency": matrix.to_bit_string(),
            "matrix": matrix.to_nested(),
            "ops": ops,
            "removed_vertices": removed,
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "{} {}", matrix.to_bit_string(), ops.join(","))?;
    }
    Ok(ExitCode::SUCCESS)
}
