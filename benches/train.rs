//! Training throughput of the dataset's default network (3 stacks x 3 modules,
//! stem 128, 32x32 images) on the README's Inception-like cell:
//! `cargo bench --bench train` (CPU) or `cargo bench --bench train --features
//! cuda -- cuda` (GPU). Prints images/s of full training steps (forward,
//! backward, RMSProp) after one warm-up step.
//!
//! Options after `--`: `cpu` or `cuda`, `batch=N` (default 64 on the CPU,
//! 256 on the GPU), `steps=N` (default 3 on the CPU, 20 on the GPU).

use std::time::Instant;

use nasbench::spec::ModelSpec;
use nasbench::train::backend::{Backend, Crop};
use nasbench::train::data::{RGB_MEAN, RGB_STD};
use nasbench::train::net::{Mode, Net, init_params};
use nasbench::train::trainer::{TrainConfig, build_graph};

fn bench<B: Backend>(be: &mut B, batch: usize, steps: usize) {
    let m = nasbench::parse::parse_matrix("0111010000000100000010000100000000100000010000000").expect("matrix");
    let ops = nasbench::parse::parse_ops(
        "input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output",
    )
    .expect("ops");
    let spec = ModelSpec::new(&m, ops).expect("spec");
    let cfg = TrainConfig::default();
    let graph = build_graph(&spec, &cfg).expect("graph");
    let params = init_params(&graph.params, 1);
    let mut net = Net::new(be, graph, batch, &params).expect("allocating the network");
    let images: Vec<u8> = (0..batch * 3 * 32 * 32).map(|i| (i * 31 % 251) as u8).collect();
    let labels: Vec<f32> = (0..batch).map(|i| (i % 10) as f32).collect();
    let crops: Vec<Crop> = (0..batch).map(|i| Crop { dy: (i % 9) as u8, dx: (i * 5 % 9) as u8, flip: i % 2 == 0 }).collect();
    let mut ms: Vec<B::Buf> = Vec::new();
    let mut mom: Vec<B::Buf> = Vec::new();
    for p in &net.graph.params {
        ms.push(be.upload(&vec![1.0; p.len()]).expect("alloc"));
        mom.push(be.zeros(p.len()).expect("alloc"));
    }
    let labels_buf = be.upload(&labels).expect("labels");
    let mut stats = be.zeros(2).expect("stats");
    let logits = net.graph.logits;
    let k = net.graph.classes;
    let rms = nasbench::train::backend::RmsProp { lr: 0.1, decay: 0.9, momentum: 0.9, eps: 1.0, weight_decay: 1e-4 };
    let mut step = |be: &mut B, net: &mut Net<B>, stats: &mut B::Buf| {
        be.load_images(&images, Some(&crops), &mut net.acts[0], batch, 32, 32, RGB_MEAN, RGB_STD).expect("images");
        net.forward(be, Mode::Train).expect("forward");
        let (acts, grads) = (&net.acts, &mut net.grads);
        be.softmax_xent(&acts[logits], &labels_buf, &mut grads[logits], stats, batch, k).expect("loss");
        net.backward(be).expect("backward");
        for i in 0..net.params.len() {
            be.rmsprop(&mut net.params[i], &net.param_grads[i], &mut ms[i], &mut mom[i], rms).expect("update");
        }
    };
    step(be, &mut net, &mut stats);
    let _ = be.download(&stats).expect("sync");
    let t = Instant::now();
    for _ in 0..steps {
        step(be, &mut net, &mut stats);
    }
    let _ = be.download(&stats).expect("sync");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "train step, default network (README cell, {} parameters), {} backend on {}: batch {batch}, {steps} steps in {secs:.2} s: {:.1} images/s, {:.1} ms/step",
        net.graph.trainable_parameters(),
        be.name(),
        be.device_name(),
        (steps * batch) as f64 / secs,
        secs * 1e3 / steps as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let get = |key: &str| args.iter().find_map(|a| a.strip_prefix(&format!("{key}="))?.parse::<usize>().ok());
    let cuda = args.iter().any(|a| a == "cuda");
    if !cuda {
        bench(&mut nasbench::train::Cpu, get("batch").unwrap_or(64), get("steps").unwrap_or(3));
        return;
    }
    #[cfg(feature = "cuda")]
    {
        match nasbench::train::cuda::Cuda::new(0) {
            Ok(mut be) => bench(&mut be, get("batch").unwrap_or(256), get("steps").unwrap_or(20)),
            Err(e) => println!("SKIPPED cuda: {e}"),
        }
    }
    #[cfg(not(feature = "cuda"))]
    println!("SKIPPED cuda: built without --features cuda");
}
