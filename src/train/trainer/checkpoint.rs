//! Checkpoints of a run: safetensors files with the run state, written atomically, checked tensor by tensor (CRC32C, dtype, shape) when read back.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cell::spec::ModelSpec;
use crate::train::backend::Backend;
use crate::train::net::Graph;

use super::*;

/// The state a checkpoint restores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct CheckpointMeta {
    pub(super) step: u64,
    pub(super) training_time: f64,
    pub(super) evaluations: Vec<EvalPoint>,
    pub(super) attempt: usize,
    pub(super) seed: u64,
    pub(super) cell: String,
    pub(super) config: TrainConfig,
    pub(super) losses: Vec<f32>,
}

/// The cell as `BITS OPS` (pruned), to match checkpoints to runs.
pub(super) fn spec_key(spec: &ModelSpec) -> String {
    match (spec.matrix(), spec.ops()) {
        (Some(m), Some(o)) => format!("{} {}", m.to_bit_string(), o.join(",")),
        _ => String::new(),
    }
}

pub(super) fn ckpt_err(path: &str, message: &str) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_string(),
        message: message.to_string(),
    }
}

/// Writes `dir/step-NNNNNNNNNN.safetensors` (temporary name, then rename):
/// parameters under their names, RMSProp slots under `slot/ms/` and
/// `slot/mom/`, batch-norm statistics under `bn/<i>/mean|var`, and the run
/// state as JSON metadata.
pub(super) fn save_checkpoint<B: Backend>(
    be: &mut B,
    dir: &Path,
    run: &Run<B>,
    meta: &CheckpointMeta,
) -> Result<(), TrainError> {
    use safetensors::tensor::{Dtype, TensorView};
    std::fs::create_dir_all(dir)
        .map_err(|e| ckpt_err(&dir.display().to_string(), &e.to_string()))?;
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, values: Vec<f32>| {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        named.push((name, shape, bytes));
    };
    for (i, info) in run.net.graph.params.iter().enumerate() {
        push(
            info.name.clone(),
            info.shape.clone(),
            be.download(&run.net.params[i])?,
        );
        push(
            format!("slot/ms/{}", info.name),
            info.shape.clone(),
            be.download(&run.ms[i])?,
        );
        push(
            format!("slot/mom/{}", info.name),
            info.shape.clone(),
            be.download(&run.mom[i])?,
        );
    }
    for (i, [m, v]) in run.net.running.iter().enumerate() {
        let c = run.net.graph.bn_channels[i];
        push(format!("bn/{i}/mean"), vec![c], be.download(m)?);
        push(format!("bn/{i}/var"), vec![c], be.download(v)?);
    }
    let path = dir.join(format!("step-{:010}.safetensors", meta.step));
    let err = |e: &dyn std::fmt::Display| ckpt_err(&path.display().to_string(), &e.to_string());
    let views: Vec<(String, TensorView<'_>)> = named
        .iter()
        .map(|(n, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<_, _>>()
        .map_err(|e| err(&e))?;
    let mut info = std::collections::HashMap::new();
    info.insert(
        "nasbench".to_string(),
        serde_json::to_string(meta).map_err(|e| err(&e))?,
    );
    let crc = tensors_crc(
        named
            .iter()
            .map(|(n, _, b)| (n.as_str(), b.as_slice()))
            .collect(),
    );
    info.insert(CHECKPOINT_CRC.to_string(), crc.to_string());
    let bytes = safetensors::serialize(views, Some(info)).map_err(|e| err(&e))?;
    crate::output::write_atomically(&path, |f| {
        std::io::Write::write_all(f, &bytes).map_err(|source| crate::output::ExportError::Io {
            path: path.display().to_string(),
            source,
        })
    })
    .map_err(|e| err(&e))?;
    Ok(())
}

/// The newest usable checkpoint in `dir` for this cell, config and seed.
/// Each file is checked whole (its metadata, and every tensor the run
/// restores: parameters, both RMSProp slots, batch-norm statistics, with
/// their names, dtype F32 and shapes); an unusable newest file (torn,
/// corrupt, incomplete) is passed over with a warning for the one before.
/// A checkpoint of another cell, config or seed is an error.
pub(super) fn latest_checkpoint(
    dir: &Path,
    graph: &Graph,
    spec: &ModelSpec,
    cfg: &TrainConfig,
    seed: u64,
    progress: &dyn TrainProgress,
) -> Result<Option<Resume>, TrainError> {
    let Ok(files) = crate::train::files_named(dir, "step-", ".safetensors") else {
        return Ok(None);
    };
    for path in files.iter().rev() {
        let shown = path.display().to_string();
        match read_checkpoint(path, graph, spec, cfg, seed) {
            Ok(resume) => return Ok(Some(resume)),
            Err(Unusable::Foreign) => {
                return Err(ckpt_err(
                    &shown,
                    "belongs to another cell, config or seed; use another --checkpoint-dir or remove it",
                ));
            }
            Err(Unusable::Bad(why)) => {
                progress.note(&format!(
                    "warning: checkpoint {shown} is unusable ({why}); trying the one before"
                ));
            }
        }
    }
    Ok(None)
}

/// The metadata key of a checkpoint's CRC32C over its tensors' bytes, in
/// name order.
pub(super) const CHECKPOINT_CRC: &str = "nasbench_crc32c";

/// The CRC32C of the tensors' bytes in name order (what [`CHECKPOINT_CRC`]
/// holds).
pub(super) fn tensors_crc(mut tensors: Vec<(&str, &[u8])>) -> u32 {
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    tensors
        .iter()
        .fold(0, |c, (_, bytes)| crc32c::crc32c_append(c, bytes))
}

/// Why a checkpoint file cannot be resumed from.
pub(super) enum Unusable {
    /// It is another run's.
    Foreign,
    /// It is damaged or incomplete.
    Bad(String),
}

/// Reads and checks one checkpoint (see [`latest_checkpoint`]).
pub(super) fn read_checkpoint(
    path: &Path,
    graph: &Graph,
    spec: &ModelSpec,
    cfg: &TrainConfig,
    seed: u64,
) -> Result<Resume, Unusable> {
    use safetensors::tensor::Dtype;
    let bad = |e: &dyn std::fmt::Display| Unusable::Bad(e.to_string());
    let bytes = std::fs::read(path).map_err(|e| bad(&e))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(&e))?;
    let meta: CheckpointMeta = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("nasbench"))
        .ok_or_else(|| bad(&"no nasbench metadata"))
        .and_then(|j| serde_json::from_str(j).map_err(|e| bad(&e)))?;
    if meta.cell != spec_key(spec) || meta.config != *cfg || meta.seed != seed {
        return Err(Unusable::Foreign);
    }
    let stored_crc: u32 = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(CHECKPOINT_CRC))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad(&"no checksum"))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(&e))?;
    let views = st.tensors();
    let crc = tensors_crc(views.iter().map(|(n, v)| (n.as_str(), v.data())).collect());
    if crc != stored_crc {
        return Err(bad(&"its tensors fail their checksum"));
    }
    let mut expected: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for info in &graph.params {
        for prefix in ["", "slot/ms/", "slot/mom/"] {
            expected.insert(format!("{prefix}{}", info.name), info.shape.clone());
        }
    }
    for (i, &c) in graph.bn_channels.iter().enumerate() {
        expected.insert(format!("bn/{i}/mean"), vec![c]);
        expected.insert(format!("bn/{i}/var"), vec![c]);
    }
    let mut tensors = BTreeMap::new();
    for (name, view) in views {
        let Some(shape) = expected.get(&name) else {
            return Err(bad(&format!("unexpected tensor {name}")));
        };
        if view.dtype() != Dtype::F32 {
            return Err(bad(&format!("{name} is {:?}, expected F32", view.dtype())));
        }
        if view.shape() != shape.as_slice() {
            return Err(bad(&format!(
                "{name} has shape {:?}, expected {shape:?}",
                view.shape()
            )));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(bad(&format!("{name} holds NaN or infinite values")));
        }
        tensors.insert(name, values);
    }
    if let Some(missing) = expected.keys().find(|k| !tensors.contains_key(*k)) {
        return Err(bad(&format!("lacks {missing}")));
    }
    Ok((meta, tensors))
}

pub(super) fn remove_checkpoints(dir: &Path) -> Result<(), TrainError> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "safetensors") {
                std::fs::remove_file(&p)
                    .map_err(|err| ckpt_err(&p.display().to_string(), &err.to_string()))?;
            }
        }
    }
    Ok(())
}
