//! nasbench-db: NAS-Bench-101 as a Rust library: the exact cell model and dataset hash, the network's shape, and the whole search space.
//!
//! ```
//! use nasbench::cell::spec::ModelSpec;
//! use nasbench::cell::parse::{parse_matrix, parse_ops};
//!
//! // The Inception-like cell of the NAS-Bench-101 README.
//! let matrix = parse_matrix("0111010 0000001 0000001 0000100 0000001 0000001 0000000").unwrap();
//! let ops = parse_ops("input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output").unwrap();
//! let spec = ModelSpec::new(&matrix, ops).unwrap();
//! assert_eq!(spec.hash().unwrap().to_string(), "28cfc7874f6d200472e1a9dcd8650aa0");
//! ```
#![warn(missing_docs)]

pub mod api;
pub mod cell;
pub mod dataset;
#[cfg(feature = "duckdb")]
pub mod db;
pub mod output;
pub mod rng;
pub mod train;

pub use cell::graph::{Matrix, ModelHash};
pub use cell::network::NetworkConfig;
pub use cell::spec::{Domain, ModelSpec, OutOfDomain, SpecError};

/// Peak resident memory of this process, from /proc (Linux only).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Asks the CPU to bring the cache line at the start of `line` into cache
/// (a hint: it never faults, and does nothing on other architectures).
#[inline(always)]
pub(crate) fn prefetch_line(line: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86_64's baseline; a prefetch never faults and
    // changes no program state; the pointer comes from a live slice.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = line;
}
