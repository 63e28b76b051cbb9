//! The GPU check in one program (run by `scripts/gpu-check.sh` on a lent
//! GPU machine): every backend op against the CPU reference on random
//! shapes, a tiny training run's first 20 losses against the CPU backend,
//! then the training-step benchmark of the dataset's default network.
//! Exits non-zero when a check fails; prints SKIPPED without a driver.
//!
//! `cargo bench --features cuda --bench gpu [-- batch=256 steps=20]`

use nasbench::train::cuda::Cuda;
use nasbench::train::parity::{check_ops, check_training};
use nasbench::train::trainer::step_benchmark;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let get = |key: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("{key}="))?.parse::<usize>().ok())
    };
    let mut gpu = match Cuda::new(0) {
        Ok(g) => g,
        Err(e) => {
            println!("SKIPPED: {e}");
            return;
        }
    };
    let mut failed = 0;
    match check_ops(&mut gpu, 2026) {
        Ok(reports) => {
            for r in &reports {
                println!("{r}");
                failed += usize::from(!r.passed());
            }
        }
        Err(e) => {
            println!("FAIL op checks: {e}");
            failed += 1;
        }
    }
    match check_training(&mut gpu, 20) {
        Ok(r) => {
            print!("{r}");
            failed += usize::from(!r.exact.passed()) + usize::from(!r.tf32.passed());
        }
        Err(e) => {
            println!("FAIL training check: {e}");
            failed += 1;
        }
    }
    for batch in [get("batch").unwrap_or(256)] {
        match step_benchmark(&mut gpu, batch, get("steps").unwrap_or(20)) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                println!("FAIL benchmark: {e}");
                failed += 1;
            }
        }
    }
    // Where a step's time goes (each launch synchronized: slower overall).
    gpu.enable_profile();
    match step_benchmark(&mut gpu, get("batch").unwrap_or(256), 2) {
        Ok(_) => print!("{}", gpu.profile_report()),
        Err(e) => println!("profile failed: {e}"),
    }
    println!("{failed} checks failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
