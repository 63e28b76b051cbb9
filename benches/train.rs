//! Training throughput of the dataset's default network (3 stacks x 3 modules,
//! stem 128, 32x32 images) on the README's Inception-like cell:
//! `cargo bench --bench train` (CPU) or `cargo bench --bench train --features
//! cuda -- cuda` (GPU). Prints images/s of full training steps (forward,
//! backward, RMSProp) after one warm-up step.
//!
//! Options after `--`: `cpu` or `cuda`, `batch=N` (default 64 on the CPU,
//! 256 on the GPU), `steps=N` (default 3 on the CPU, 20 on the GPU).

use nasbench::train::backend::Backend;
use nasbench::train::trainer::step_benchmark;

fn bench<B: Backend>(be: &mut B, batch: usize, steps: usize) {
    match step_benchmark(be, batch, steps) {
        Ok(line) => println!("{line}"),
        Err(e) => println!("FAILED: {e}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let get = |key: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("{key}="))?.parse::<usize>().ok())
    };
    let cuda = args.iter().any(|a| a == "cuda");
    if !cuda {
        bench(
            &mut nasbench::train::Cpu,
            get("batch").unwrap_or(64),
            get("steps").unwrap_or(3),
        );
        return;
    }
    #[cfg(feature = "cuda")]
    {
        match nasbench::train::cuda::Cuda::new(0) {
            Ok(mut be) => bench(
                &mut be,
                get("batch").unwrap_or(256),
                get("steps").unwrap_or(20),
            ),
            Err(e) => println!("SKIPPED cuda: {e}"),
        }
    }
    #[cfg(not(feature = "cuda"))]
    println!("SKIPPED cuda: built without --features cuda");
}
