//! The release files and the dataset they hold: TFRecord framing, one record's payload, synthetic release files, and downloading the real ones.

#[cfg(feature = "fetch")]
pub mod fetch;
pub mod record;
pub mod synth;
pub mod tfrecord;

/// `source` of the rows of a release file.
pub const RELEASE_SOURCE: &str = "nasbench-101";
/// `source` of the rows of a file written by `nasbench synth`.
pub const SYNTHETIC_SOURCE: &str = "synthetic";
/// Checkpoint paths starting with this mark a synthetic record; ingest gives
/// its rows [`SYNTHETIC_SOURCE`]. The mark alone, as `nasbench synth` writes
/// it, names no checkpoint and is stored as NULL (the release's records
/// have no checkpoint paths either), see `db::ingest::stored_checkpoint_path`.
pub const SYNTHETIC_CHECKPOINT_PREFIX: &str = "synthetic:";
