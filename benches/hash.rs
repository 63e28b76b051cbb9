//! Hash and enumeration throughput: `cargo bench --bench hash`.
//!
//! Prints cells hashed per second on one core (scalar path, and the
//! lane-parallel batch path that `generate` uses), and the wall time of a
//! full `generate` on all cores.

use std::time::Instant;

use nasbench::cell::generate::{GenerateOptions, NoProgress, generate};
use nasbench::cell::graph::{HashScratch, hash_module_with};
use nasbench::cell::lanes::{BatchScratch, LANES, hash_batch};

fn main() {
    let t = Instant::now();
    let space = generate(&GenerateOptions::default(), &NoProgress).expect("generate");
    let gen_secs = t.elapsed().as_secs_f64();
    println!(
        "generate (full space, {} threads): {} cells from {} labeled graphs in {:.2} s",
        rayon::current_num_threads(),
        space.cells.len(),
        space.labeled_graphs,
        gen_secs
    );

    // The 7-vertex cells dominate the space; hash the last 100,000 cells.
    let sample = &space.cells[space.cells.len() - 100_000..];
    let inputs: Vec<(Vec<u64>, Vec<i64>)> = sample
        .iter()
        .map(|c| (c.graph.matrix().rows().to_vec(), c.graph.labels()))
        .collect();

    let mut scratch = HashScratch::default();
    let t = Instant::now();
    let mut check = 0u8;
    for (rows, labels) in &inputs {
        check ^= hash_module_with(rows, labels, &mut scratch).0[0];
    }
    let scalar = inputs.len() as f64 / t.elapsed().as_secs_f64();
    println!("hash_module_with (scalar, 1 core): {scalar:.0} cells/s (checksum {check})");

    // Batches of up to LANES cells sharing one shape, as generate forms them.
    let mut batch_scratch = BatchScratch::default();
    let t = Instant::now();
    let mut hashed = 0usize;
    let mut i = 0;
    while i < inputs.len() {
        let mut j = i + 1;
        while j < inputs.len() && j - i < LANES && inputs[j].0 == inputs[i].0 {
            j += 1;
        }
        let refs: Vec<&[i64]> = inputs[i..j].iter().map(|(_, l)| l.as_slice()).collect();
        let hashes = hash_batch(&inputs[i].0, &refs, &mut batch_scratch);
        hashed += hashes.len();
        check ^= hashes[0].0[0];
        i = j;
    }
    let batched = hashed as f64 / t.elapsed().as_secs_f64();
    println!("hash_batch ({LANES} lanes, 1 core): {batched:.0} cells/s (checksum {check})");
}
