//! Training end to end on the synthetic dataset: accuracy, rows in the database, determinism, checkpoints, schedules, data formats, parameter counts, and the kill-and-resume of `worker`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ROOT, run};
use nasbench::api::SplitMix64;
use nasbench::cell::graph::Matrix;
use nasbench::cell::network::{NetworkConfig, network_parameters};
use nasbench::cell::ops::Op;
use nasbench::cell::spec::ModelSpec;
use nasbench::train::Cpu;
use nasbench::train::data;
use nasbench::train::net::Graph;
use nasbench::train::trainer::{LrDecay, Quiet, RunOptions, TrainConfig, build_graph, train};

const BIN: &str = env!("CARGO_BIN_EXE_nasbench");

fn spec(bits: &str, ops: &str) -> ModelSpec {
    let m = nasbench::cell::parse::parse_matrix(bits).unwrap();
    ModelSpec::new(&m, nasbench::cell::parse::parse_ops(ops).unwrap()).unwrap()
}

/// The tiny config of the tests: 16x16 images, stem 16, one module.
fn tiny(epochs: f64) -> TrainConfig {
    let mut c = TrainConfig::default();
    for (k, v) in [
        ("stem_filter_size", "16"),
        ("num_stacks", "1"),
        ("num_modules_per_stack", "1"),
        ("image_size", "16"),
        ("batch_size", "32"),
    ] {
        c.set(k, v).unwrap();
    }
    c.train_epochs = epochs;
    c
}

fn tiny_args() -> Vec<&'static str> {
    common::TINY_TRAIN.to_vec()
}

const CELL_BITS: &str = "0110000100010000";
const CELL_OPS: &str = "input,conv3x3-bn-relu,maxpool3x3,output";

fn synth(dir: &Path, per_file: usize) -> data::Cifar {
    data::write_synthetic(dir, per_file, 16, 7).unwrap();
    data::load(dir, 16).unwrap()
}

#[test]
fn tiny_network_learns_the_synthetic_set_and_its_rows_land_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new(BIN)
        .args([
            "synth-cifar",
            "--images-per-file",
            "1024",
            "--image-size",
            "16",
        ])
        .arg(dir.path()));
    let db = dir.path().join("runs.duckdb");
    let started = Instant::now();
    let out = run(Command::new(BIN)
        .args([
            "train",
            "-q",
            "--matrix",
            CELL_BITS,
            "--ops",
            CELL_OPS,
            "--epochs",
            "6",
            "--repeats",
            "1",
            "--data",
        ])
        .arg(dir.path())
        .args(tiny_args())
        .arg("--db")
        .arg(&db));
    let secs = started.elapsed().as_secs_f64();
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    eprintln!("trained in {secs:.1} s: {v}");
    assert!(secs < 60.0, "training took {secs:.1} s");
    assert_eq!(v["status"], "completed");
    let test = v["test_accuracy"].as_f64().unwrap();
    assert!(test >= 0.9, "test accuracy {test}");

    let conn = duckdb::Connection::open(&db).unwrap();
    let run_id: String = conn
        .query_row(
            "SELECT run_id FROM training_runs WHERE status = 'completed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(run_id, v["run_id"].as_str().unwrap());
    let points: Vec<(i32, f64, f64)> = conn
        .prepare("SELECT point, current_epoch, test_accuracy FROM evaluations WHERE source = ? ORDER BY point")
        .unwrap()
        .query_map([&run_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        points.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
        [(0, 0.0), (1, 3.0), (2, 6.0)]
    );
    assert_eq!(points[2].2, test);
    // Accuracies are whole batches: multiples of 1/(32 * (1024 / 32)).
    assert_eq!((points[2].2 * 1024.0).fract(), 0.0);
    let (trained, hash): (bool, String) = conn
        .query_row("SELECT trained, hash FROM model_stats", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(trained);
    assert_eq!(hash, spec(CELL_BITS, CELL_OPS).hash().unwrap().to_hex());
}

#[test]
fn same_seed_same_losses_and_a_resumed_run_ends_identically() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 128);
    let s = spec(CELL_BITS, CELL_OPS);
    let cfg = tiny(4.0);
    let opts = |seed, ckpt: Option<PathBuf>| RunOptions {
        seed,
        checkpoint_dir: ckpt,
        record_losses: 10,
        report_every: 0,
        progress: &Quiet,
    };
    let a = train(&mut Cpu, &s, &cfg, &data, &opts(5, None)).unwrap();
    let b = train(&mut Cpu, &s, &cfg, &data, &opts(5, None)).unwrap();
    let c = train(&mut Cpu, &s, &cfg, &data, &opts(6, None)).unwrap();
    assert_eq!(a.losses.len(), 10);
    assert_eq!(
        a.losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
        b.losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
        "same seed, same losses bit for bit"
    );
    assert_ne!(a.losses, c.losses);
    // Checkpointed run, then kill the last checkpoint and resume.
    let ck = dir.path().join("ck");
    let full = train(&mut Cpu, &s, &cfg, &data, &opts(5, Some(ck.clone()))).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "one checkpoint per evaluation: {files:?}");
    std::fs::remove_file(files.last().unwrap()).unwrap();
    let resumed = train(&mut Cpu, &s, &cfg, &data, &opts(5, Some(ck.clone()))).unwrap();
    let acc = |o: &nasbench::train::trainer::TrainOutcome| {
        o.evaluations
            .iter()
            .map(|e| {
                (
                    e.steps,
                    e.train_accuracy,
                    e.validation_accuracy,
                    e.test_accuracy,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(acc(&full), acc(&a));
    assert_eq!(
        acc(&resumed),
        acc(&full),
        "resumed from the halfway checkpoint"
    );
    // A damaged newest checkpoint (a flipped byte in its tensors, a torn
    // write, junk) is passed over with a warning for the one before, and
    // the run still ends as the uninterrupted one.
    let newest = files.last().unwrap().clone();
    let good = std::fs::read(&newest).unwrap();
    let mut flipped = good.clone();
    let at = good.len() - 40;
    flipped[at] ^= 0x04;
    for (what, bad) in [
        ("flipped", flipped),
        ("torn", good[..good.len() / 2].to_vec()),
        ("junk", b"not a checkpoint".to_vec()),
    ] {
        std::fs::write(&newest, &bad).unwrap();
        let notes = Notes::default();
        let o = RunOptions {
            progress: &notes,
            ..opts(5, Some(ck.clone()))
        };
        let again = train(&mut Cpu, &s, &cfg, &data, &o).unwrap();
        assert_eq!(acc(&again), acc(&full), "{what}");
        let notes = notes.0.lock().unwrap();
        assert!(
            notes
                .iter()
                .any(|n| n.contains("is unusable") && n.contains("trying the one before")),
            "{what}: {notes:?}"
        );
        assert!(
            notes.iter().any(|n| n.contains("resuming at step")),
            "{what}: resumed from the previous one: {notes:?}"
        );
    }
}

/// Collects the notes of a run.
#[derive(Default)]
struct Notes(std::sync::Mutex<Vec<String>>);

impl nasbench::train::trainer::TrainProgress for Notes {
    fn step(&self, _: u64, _: u64, _: f64, _: Option<f32>, _: f64) {}
    fn evaluated(&self, _: &nasbench::train::trainer::EvalPoint) {}
    fn note(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}

/// SPEC.md section 5: cosine by step with base 0.1 x 2 shards and rate 0 at
/// step 0; stepwise boundaries at 1/2, 2/3, 5/6 of the steps.
#[test]
fn learning_rate_schedules_by_hand() {
    let cfg = TrainConfig::default();
    let total = (108.0 * 40_000.0 / 256.0) as u64; // 16875
    assert_eq!(cfg.total_steps(40_000), total);
    assert_eq!(cfg.learning_rate_at(0, 40_000), 0.0);
    let at = |s: u64| 0.5 * 0.2 * (1.0 + (std::f64::consts::PI * s as f64 / total as f64).cos());
    for s in [1, 100, 8437, 16874, 16875] {
        assert!((cfg.learning_rate_at(s, 40_000) - at(s)).abs() < 1e-12);
    }
    assert!((cfg.learning_rate_at(total / 2, 40_000) - 0.1).abs() < 1e-4);
    assert_eq!(
        cfg.evaluation_steps(40_000),
        vec![(54.0, 8437), (108.0, 16875)]
    );
    let sw = TrainConfig {
        lr_decay_method: LrDecay::Stepwise,
        train_epochs: 200.0,
        ..TrainConfig::default()
    };
    let t = 200.0 * 40_000.0 / 256.0; // 31250
    let b = [(0.5 * t) as u64, (0.667 * t) as u64, (0.833 * t) as u64];
    assert_eq!(sw.learning_rate_at(b[0], 40_000), 0.2);
    assert!((sw.learning_rate_at(b[0] + 1, 40_000) - 0.02).abs() < 1e-12);
    assert!((sw.learning_rate_at(b[1] + 1, 40_000) - 0.002).abs() < 1e-12);
    assert!((sw.learning_rate_at(b[2] + 1, 40_000) - 0.00002).abs() < 1e-12);
    let mut bad = TrainConfig::default();
    assert!(bad.set("lr_decay_method", "COSINE_BY_TIME").is_err());
    let e = bad.set("stem_filters", "3").unwrap_err().to_string();
    assert!(e.contains("stem_filter_size"), "{e}");
}

/// The network built for training has exactly the analytic parameter
/// count, for the README cell (the dataset's 2,694,282) and random cells.
#[test]
fn built_network_parameters_equal_the_analytic_count() {
    let readme = spec(
        "0111010000000100000010000100000000100000010000000",
        "input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output",
    );
    let g = build_graph(&readme, &TrainConfig::default()).unwrap();
    assert_eq!(g.trainable_parameters(), 2_694_282);
    let out = run(Command::new(BIN).args([
        "train",
        "--dry-run",
        "--matrix",
        "0111010000000100000010000100000000100000010000000",
        "--ops",
        "input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["trainable_parameters"], 2_694_282);
    let last = v["layers"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["op"], "dense");
    assert_eq!(last["output"], serde_json::json!([10, 1, 1]));

    let mut rng = SplitMix64::new(99);
    let config = NetworkConfig::default();
    let mut checked = 0;
    while checked < 200 {
        let n = 2 + rng.below(6) as usize;
        let mut m = Matrix::zeros(n);
        for i in 0..n {
            for j in i + 1..n {
                if rng.below(2) == 1 {
                    m.set(i, j, true);
                }
            }
        }
        let ops: Vec<Op> = (0..n.saturating_sub(2))
            .map(|_| Op::ALL[rng.below(7) as usize])
            .collect();
        let mut names = vec!["input".to_string()];
        names.extend(ops.iter().map(|o| o.name().to_string()));
        names.push("output".into());
        let Ok(s) = ModelSpec::from_matrix(m, names) else {
            continue;
        };
        let (Some(pm), Some(po)) = (s.matrix(), s.ops()) else {
            continue;
        };
        let interior: Vec<Op> = po[1..po.len() - 1]
            .iter()
            .map(|o| o.parse().unwrap())
            .collect();
        let Ok(want) = network_parameters(pm, &interior, &config) else {
            continue;
        };
        let g = Graph::build(pm, &interior, &config, 32, 32).unwrap();
        assert_eq!(g.trainable_parameters(), want, "{pm:?} {po:?}");
        checked += 1;
    }
}

/// The same synthetic images through the binary, Python-pickle and
/// TFRecord readers.
#[test]
fn every_cifar_format_reads_the_same_images() {
    let dir = tempfile::tempdir().unwrap();
    let bin = synth(dir.path(), 20);
    assert_eq!(bin.train.len(), 80);
    assert_eq!(bin.train_eval_len, 20);
    assert_eq!((bin.valid.len(), bin.test.len()), (20, 20));

    // TFRecords as generate_cifar10_tfrecords.py writes them.
    let tf = dir.path().join("tf");
    std::fs::create_dir_all(&tf).unwrap();
    let split_of = |k: usize| match k {
        0..=3 => {
            let s = &bin.train;
            let b = s.image_bytes();
            (
                s.images[k * 20 * b..(k + 1) * 20 * b].to_vec(),
                s.labels[k * 20..(k + 1) * 20].to_vec(),
            )
        }
        4 => (bin.valid.images.clone(), bin.valid.labels.clone()),
        _ => (bin.test.images.clone(), bin.test.labels.clone()),
    };
    let names = [
        "train_1",
        "train_2",
        "train_3",
        "train_4",
        "validation",
        "test",
    ];
    for (k, name) in names.iter().enumerate() {
        let (images, labels) = split_of(k);
        let mut out = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            let ex = example(&images[i * 768..(i + 1) * 768], i64::from(l));
            nasbench::dataset::tfrecord::write_record(&mut out, &ex).unwrap();
        }
        std::fs::write(tf.join(format!("{name}.tfrecords")), out).unwrap();
    }
    let from_tf = data::load(&tf, 16).unwrap();
    assert_eq!(
        (
            from_tf.train.clone(),
            from_tf.valid.clone(),
            from_tf.test.clone()
        ),
        (bin.train.clone(), bin.valid.clone(), bin.test.clone())
    );

    // The Python release, written by numpy's pickle when the venv has it.
    let python = common::venv_bin("python");
    let has_numpy = python.as_ref().is_some_and(|p| {
        Command::new(p)
            .args(["-c", "import numpy"])
            .status()
            .is_ok_and(|s| s.success())
    });
    if !has_numpy {
        common::skipped(
            "the pickle reader check needs .venv/bin/python with numpy (made by .ci/run)",
        );
    } else {
        let py = dir.path().join("py");
        std::fs::create_dir_all(py.join("cifar-10-batches-py")).unwrap();
        let script = r#"
import numpy as np, pickle, sys, os
src, dst = sys.argv[1], sys.argv[2]
names = ['data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4', 'data_batch_5', 'test_batch']
for n in names:
    raw = np.fromfile(os.path.join(src, n + '.bin'), dtype=np.uint8).reshape(-1, 1 + 768)
    d = {b'batch_label': n.encode(), b'labels': [int(x) for x in raw[:, 0]], b'data': raw[:, 1:].copy()}
    with open(os.path.join(dst, n), 'wb') as f:
        pickle.dump(d, f, protocol=2)
"#;
        run(Command::new(python.unwrap())
            .args(["-c", script])
            .arg(dir.path().join("cifar-10-batches-bin"))
            .arg(py.join("cifar-10-batches-py")));
        let from_py = data::load(&py, 16).unwrap();
        assert_eq!(
            (from_py.train, from_py.valid, from_py.test),
            (bin.train, bin.valid, bin.test)
        );
    }

    // Missing data names what is missing.
    let e = data::load(&dir.path().join("nothing"), 32)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cifar-10-batches-bin") && e.contains("synth-cifar"),
        "{e}"
    );
    std::fs::remove_file(dir.path().join("cifar-10-batches-bin/data_batch_3.bin")).unwrap();
    let e = data::load(dir.path(), 16).unwrap_err().to_string();
    assert!(e.contains("data_batch_3.bin: missing"), "{e}");
}

/// A serialized tf.train.Example with `image` and `label`, built by hand
/// from the protobuf wire format (independent of the reader's prost types).
fn example(image: &[u8], label: i64) -> Vec<u8> {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn field(num: u64, bytes: &[u8], out: &mut Vec<u8>) {
        varint(num << 3 | 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }
    fn entry(key: &str, feature: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        field(1, key.as_bytes(), &mut e);
        field(2, feature, &mut e);
        e
    }
    let mut bytes_list = Vec::new();
    field(1, image, &mut bytes_list);
    let mut image_feature = Vec::new();
    field(1, &bytes_list, &mut image_feature);
    let mut packed = Vec::new();
    varint(label as u64, &mut packed);
    let mut int_list = Vec::new();
    field(1, &packed, &mut int_list);
    let mut label_feature = Vec::new();
    field(3, &int_list, &mut label_feature);
    let mut features = Vec::new();
    field(1, &entry("image", &image_feature), &mut features);
    field(1, &entry("label", &label_feature), &mut features);
    let mut ex = Vec::new();
    field(1, &features, &mut ex);
    ex
}

/// `worker` killed after its first unit, then restarted, finishes every
/// unit once; `ingest-runs` merges them, and merging again adds nothing.
#[test]
fn killed_worker_resumes_without_losing_or_duplicating_units() {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new(BIN)
        .args([
            "synth-cifar",
            "--images-per-file",
            "64",
            "--image-size",
            "16",
        ])
        .arg(dir.path()));
    let cells = dir.path().join("cells.txt");
    std::fs::write(
        &cells,
        format!("# two cells\n{CELL_BITS} {CELL_OPS}\n010001000 input,conv1x1-bn-relu,output\n"),
    )
    .unwrap();
    let out = dir.path().join("out");
    let worker = || common::worker_command(Path::new(BIN), &cells, &out, dir.path());
    let units = |out: &Path| common::unit_files(out);
    let mut child = worker()
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while units(&out).is_empty() && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let after_kill = units(&out);
    assert!(
        !after_kill.is_empty() && after_kill.len() < 4,
        "{after_kill:?}"
    );
    run(&mut worker());
    assert_eq!(
        units(&out),
        [
            "unit-00000000.parquet",
            "unit-00000001.parquet",
            "unit-00000002.parquet",
            "unit-00000003.parquet"
        ]
    );
    let db = dir.path().join("w.duckdb");
    for _ in 0..2 {
        run(Command::new(BIN)
            .arg("ingest-runs")
            .arg(&out)
            .arg("--db")
            .arg(&db));
        let conn = duckdb::Connection::open(&db).unwrap();
        let (runs, rows, reps): (i64, i64, String) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM training_runs), (SELECT count(*) FROM evaluations), \
                 (SELECT string_agg(repeat::VARCHAR, ',' ORDER BY run_id) FROM training_runs)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((runs, rows), (4, 12));
        // Units 0, 1 are repeat 1 of the two cells, units 2, 3 repeat 2.
        assert_eq!(reps, "1,1,2,2");
    }
    assert!(
        Path::new(ROOT)
            .join("scripts/slurm/train-array.sbatch")
            .is_file()
    );
}

/// A diverging run (an absurd learning rate) is retried from scratch up to
/// `max_attempts`, then recorded as failed with the reason; the CLI stores
/// it as a failed run.
#[test]
fn nan_losses_are_retried_then_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 64);
    let mut cfg = tiny(1.0);
    cfg.set("learning_rate", "1e30").unwrap();
    cfg.set("max_attempts", "2").unwrap();
    let out = train(
        &mut Cpu,
        &spec(CELL_BITS, CELL_OPS),
        &cfg,
        &data,
        &RunOptions {
            seed: 1,
            checkpoint_dir: None,
            record_losses: 4,
            report_every: 0,
            progress: &Quiet,
        },
    )
    .unwrap();
    assert_eq!(out.attempts, 2);
    let why = out.failure.unwrap();
    assert!(why.contains("loss is") && why.contains("step"), "{why}");
    assert!(out.evaluations.is_empty());
}
