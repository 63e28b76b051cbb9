//! A real single-node Slurm cluster (Debian's slurm-wlm and munge, started by `scripts/slurm/local-cluster.sh`): the job array of `scripts/slurm/train-array.sbatch` trains tiny cells on synthetic data, one task is cancelled mid-run, the resubmitted array finishes, and the merge holds every (cell, repeat) exactly once.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ROOT, run, unit_files as units};

const BIN: &str = env!("CARGO_BIN_EXE_nasbench");

/// CI sets NASBENCH_REQUIRE_SLURM=1 (it installs Slurm and runs as root):
/// there a missing cluster is a failure.
fn skip_or_fail(why: &str) {
    if std::env::var_os("NASBENCH_REQUIRE_SLURM").is_some() {
        panic!("{why} (NASBENCH_REQUIRE_SLURM is set)");
    }
    common::skipped(why);
}

/// Stops the cluster however the test ends.
struct Cluster(PathBuf);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(Path::new(ROOT).join("scripts/slurm/local-cluster.sh"))
            .arg("stop")
            .arg(&self.0)
            .status();
    }
}

fn slurm(conf: &Path, tool: &str) -> Command {
    let mut c = Command::new(tool);
    c.env("SLURM_CONF", conf);
    c
}

/// The array tasks of `job` still queued or running.
fn queued(conf: &Path, job: &str) -> Vec<(String, String)> {
    let out = slurm(conf, "squeue")
        .args(["-h", "-r", "-o", "%i %T", "-j", job])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn a_job_array_survives_a_cancelled_task_and_merges_every_unit_once() {
    let has_tools = [
        "sbatch",
        "squeue",
        "scancel",
        "slurmctld",
        "slurmd",
        "munged",
    ]
    .iter()
    .all(|t| {
        Command::new("which")
            .arg(t)
            .output()
            .is_ok_and(|o| o.status.success())
    });
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !has_tools || !root {
        skip_or_fail(
            "no Slurm here (needs root and `apt-get install slurm-wlm munge`; .ci/run does both)",
        );
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let cluster_dir = dir.path().join("cluster");
    let up = Command::new(Path::new(ROOT).join("scripts/slurm/local-cluster.sh"))
        .arg("start")
        .arg(&cluster_dir)
        .output()
        .unwrap();
    let _cluster = Cluster(cluster_dir.clone());
    assert!(
        up.status.success(),
        "{}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let conf = cluster_dir.join("slurm.conf");

    let data = dir.path().join("cifar");
    run(Command::new(BIN)
        .args([
            "synth-cifar",
            "--image-size",
            "16",
            "--images-per-file",
            "128",
        ])
        .arg(&data));
    let cells = dir.path().join("cells.txt");
    std::fs::write(
        &cells,
        "0110000100010000 input,conv3x3-bn-relu,maxpool3x3,output\n\
         010001000 input,conv1x1-bn-relu,output\n\
         011001000 input,maxpool3x3,output\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let submit = || -> String {
        let o = slurm(&conf, "sbatch")
            .args(["--parsable", "--array=0-2", "--gres=none", "--mem=200M"])
            .args(["--cpus-per-task=1", "--time=10", "--export=ALL"])
            .arg(format!("--output={}/%A_%a.out", logs.display()))
            .arg(Path::new(ROOT).join("scripts/slurm/train-array.sbatch"))
            .env("CELLS", &cells)
            .env("DATA", &data)
            .env("OUT", &out)
            .env("NASBENCH", BIN)
            .env("DEVICE", "cpu")
            .env("EPOCHS", "3")
            .env("REPEATS", "2")
            .env(
                "EXTRA_ARGS",
                "--config stem_filter_size=16 --config num_stacks=1 --config num_modules_per_stack=1 \
                 --config image_size=16 --config batch_size=32",
            )
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "sbatch: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let wait_done = |job: &str| {
        let t = Instant::now();
        while !queued(&conf, job).is_empty() {
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "job {job} still queued"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    // Units 1 and 4 belong to task 1 (unit i goes to task i % 3): cancel it
    // as soon as it runs.
    let job = submit();
    let target = format!("{job}_1");
    let t = Instant::now();
    while !queued(&conf, &job)
        .iter()
        .any(|(id, st)| *id == target && st == "RUNNING")
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "task 1 never ran: {:?}",
            queued(&conf, &job)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let c = slurm(&conf, "scancel").arg(&target).output().unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    wait_done(&job);
    let first = units(&out);
    assert!(
        !first.contains(&"unit-00000004.parquet".to_string()),
        "the cancelled task did not finish: {first:?}"
    );
    for u in [0, 2, 3, 5] {
        assert!(first.contains(&format!("unit-{u:08}.parquet")), "{first:?}");
    }

    // Resubmitted, the array finishes what is missing and skips the rest.
    let again = submit();
    wait_done(&again);
    let all = units(&out);
    assert_eq!(all.len(), 6, "3 cells x 2 repeats: {all:?}");

    let db = dir.path().join("runs.duckdb");
    for pass in 0..2 {
        let o = Command::new(BIN)
            .arg("ingest-runs")
            .arg(&out)
            .arg("--db")
            .arg(&db)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        let added = if pass == 0 { 6 } else { 0 };
        assert!(
            err.contains(&format!("{added} new runs added")),
            "pass {pass}: {err}"
        );
        let conn = duckdb::Connection::open(&db).unwrap();
        let n: (i64, i64) = conn
            .query_row(
                "SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT hash, repeat FROM training_runs)) \
                 FROM training_runs WHERE status = 'completed'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(n, (6, 6), "every (cell, repeat) exactly once");
    }
    let _ = std::io::Write::write_all(
        &mut std::io::stderr().lock(),
        format!(
            "slurm: cancelled task 1, resubmitted, merged 6 units in {:.0} s\n",
            started.elapsed().as_secs_f64()
        )
        .as_bytes(),
    );
}
