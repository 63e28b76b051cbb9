//! The release files and the dataset they hold: TFRecord framing, one record's payload, synthetic release files, and downloading the real ones.

pub mod fetch;
pub mod record;
pub mod synth;
pub mod tfrecord;
