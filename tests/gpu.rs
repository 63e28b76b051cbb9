//! The CUDA backend against the CPU reference: every op on random shapes and a tiny training run's losses. Skips, saying so, when no CUDA driver is found.
#![cfg(feature = "cuda")]

use crate::common;

use nasbench::train::cuda::{Cuda, driver_present};
use nasbench::train::parity::{check_ops, check_training};

fn gpu() -> Option<Cuda> {
    if !driver_present() {
        common::skipped(
            "no CUDA driver found (the GPU parity tests run in scripts/gpu-check.sh on a GPU machine)",
        );
        return None;
    }
    match Cuda::new(0) {
        Ok(g) => Some(g),
        Err(e) => {
            common::skipped(&e.to_string());
            None
        }
    }
}

#[test]
fn every_op_matches_the_cpu_reference() {
    let Some(mut g) = gpu() else { return };
    let reports = check_ops(&mut g, 7).unwrap();
    for r in &reports {
        eprintln!("{r}");
    }
    assert!(reports.iter().all(|r| r.passed()));
}

#[test]
fn tiny_training_follows_the_cpu_loss_curve() {
    let Some(mut g) = gpu() else { return };
    let r = check_training(&mut g, 20).unwrap();
    eprintln!("{r}");
    assert!(r.exact.passed() && r.tf32.passed());
}
