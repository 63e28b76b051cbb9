//! One release record's payload: the JSON row `[hash, epochs, adjacency, ops, metrics]` with its base64 `ModelMetrics` decoded by prost.

use std::borrow::Cow;

use base64::DecodeSliceError;
use base64::Engine as _;
use prost::Message as _;

/// Types generated from `proto/model_metrics.proto`.
#[allow(missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/nasbench.rs"));
}

pub use pb::{EvaluationData, ModelMetrics};

/// A record's payload that cannot be decoded; the caller adds the record
/// number and byte offset.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not the JSON row `[hash, epochs, adjacency, ops, metrics]`.
    #[error("bad JSON row: {0}")]
    Json(#[from] serde_json::Error),
    /// `raw_metrics` is not base64.
    #[error("bad base64 in raw_metrics: {0}")]
    Base64(#[from] base64::DecodeError),
    /// `raw_metrics` is not a serialized ModelMetrics.
    #[error("undecodable ModelMetrics: {0}")]
    Proto(#[from] prost::DecodeError),
}

/// The JSON row, borrowing from the record wherever no escape forces a copy.
#[derive(serde::Deserialize)]
struct Row<'a>(
    #[serde(borrow)] Cow<'a, str>,
    i64,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
);

/// A decoded record; [`decode_into`] gives one without its metrics
/// (`M = ()`), which it decodes into the caller's message.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a, M = ModelMetrics> {
    /// The module hash (the dataset key).
    pub hash: Cow<'a, str>,
    /// The training budget in epochs (4, 12, 36, 108).
    pub epochs: i64,
    /// Row-major `0`/`1` adjacency string.
    pub adjacency: Cow<'a, str>,
    /// Comma-joined op names.
    pub operations: Cow<'a, str>,
    /// The run's metrics: `evaluation_data` (`[0]` step 0, `[1]` halfway, `[2]` end),
    /// trainable_parameters, total_time. Absent proto2 fields are `None`.
    pub metrics: M,
}

/// Decodes one record's data (the TFRecord payload).
pub fn decode(data: &[u8]) -> Result<Record<'_>, RecordError> {
    let mut metrics = ModelMetrics::default();
    let r = decode_into(data, &mut metrics)?;
    Ok(Record {
        hash: r.hash,
        epochs: r.epochs,
        adjacency: r.adjacency,
        operations: r.operations,
        metrics,
    })
}

/// [`decode`] into a caller's `metrics`, which is cleared first and keeps
/// its allocations: a loop over records that reuses one `ModelMetrics`
/// allocates nothing for records without checkpoint paths.
pub fn decode_into<'a>(
    data: &'a [u8],
    metrics: &mut ModelMetrics,
) -> Result<Record<'a, ()>, RecordError> {
    let Row(hash, epochs, adjacency, operations, raw) = serde_json::from_slice(data)?;
    metrics.clear();
    // Release metrics are a few hundred bytes: decode them on the stack.
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut stack = [0u8; 1024];
    match engine.decode_slice(raw.as_bytes(), &mut stack) {
        Ok(n) => metrics.merge(&stack[..n])?,
        Err(DecodeSliceError::OutputSliceTooSmall) => {
            metrics.merge(engine.decode(raw.as_bytes())?.as_slice())?
        }
        Err(DecodeSliceError::DecodeError(e)) => return Err(e.into()),
    }
    Ok(Record {
        hash,
        epochs,
        adjacency,
        operations,
        metrics: (),
    })
}

/// Encodes a record's data, the inverse of [`decode`].
pub fn encode(
    hash: &str,
    epochs: i64,
    adjacency: &str,
    operations: &str,
    metrics: &ModelMetrics,
) -> Result<Vec<u8>, RecordError> {
    let raw = base64::engine::general_purpose::STANDARD.encode(metrics.encode_to_vec());
    // serde_json writes the row exactly as the release's json.dumps does
    // for these plain ASCII strings, minus the spaces after commas.
    Ok(serde_json::to_vec(&(
        hash, epochs, adjacency, operations, raw,
    ))?)
}
