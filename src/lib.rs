//! nasbench-db: NAS-Bench-101 as a Rust library: the exact cell model and dataset hash, the network's shape, and the whole search space.
//!
//! ```
//! use nasbench::spec::ModelSpec;
//! use nasbench::parse::{parse_matrix, parse_ops};
//!
//! // The Inception-like cell of the NAS-Bench-101 README.
//! let matrix = parse_matrix("0111010 0000001 0000001 0000100 0000001 0000001 0000000").unwrap();
//! let ops = parse_ops("input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output").unwrap();
//! let spec = ModelSpec::new(&matrix, ops).unwrap();
//! assert_eq!(spec.hash().unwrap().to_string(), "28cfc7874f6d200472e1a9dcd8650aa0");
//! ```
#![warn(missing_docs)]

pub mod api;
pub mod cleanup;
pub mod db;
pub mod export;
pub mod extension;
pub mod fetch;
pub mod generate;
pub mod graph;
pub mod ingest;
pub mod lanes;
pub mod network;
pub mod ops;
pub mod parse;
pub mod record;
pub mod spec;
pub mod sqlfn;
pub mod synth;
pub mod tfrecord;
pub mod train;

pub use graph::{Matrix, ModelHash};
pub use network::NetworkConfig;
pub use spec::{Domain, ModelSpec, OutOfDomain, SpecError};

/// Peak resident memory of this process, from /proc (Linux only).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
