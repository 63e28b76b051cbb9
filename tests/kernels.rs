//! Every CUDA kernel compiles with NVRTC for sm_80 and sm_90, and ptxas reports no register spills (no GPU needed).
#![cfg(feature = "cuda")]

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use nasbench::train::cuda::{SOURCES, compile_cached, nvrtc_present};

/// `ptxas` from PATH or from the project virtualenv (`nvidia-cuda-nvcc-cu12`).
fn ptxas() -> Option<PathBuf> {
    let venv = std::path::Path::new(common::ROOT).join(".venv/lib");
    let from_venv = std::fs::read_dir(&venv).ok().and_then(|d| {
        d.filter_map(Result::ok)
            .map(|e| e.path().join("site-packages/nvidia/cuda_nvcc/bin/ptxas"))
            .find(|p| p.is_file())
    });
    from_venv.or_else(|| {
        Command::new("ptxas")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| PathBuf::from("ptxas"))
    })
}

/// CI sets NASBENCH_REQUIRE_NVRTC=1: there a missing tool is a failure.
fn skip_or_fail(why: &str) {
    if std::env::var_os("NASBENCH_REQUIRE_NVRTC").is_some() {
        panic!("{why} (NASBENCH_REQUIRE_NVRTC is set)");
    }
    common::skipped(why);
}

#[test]
fn every_kernel_compiles_for_sm80_and_sm90_without_spills() {
    if !nvrtc_present() {
        skip_or_fail(
            "libnvrtc not found; `. .ci/env.sh` puts the virtualenv's nvidia-cuda-nvrtc-cu12 on LD_LIBRARY_PATH",
        );
        return;
    }
    let ptxas = ptxas();
    if ptxas.is_none() {
        skip_or_fail("ptxas not found (pip install nvidia-cuda-nvcc-cu12 into .venv)");
    }
    let dir = tempfile::tempdir().unwrap();
    for (arch, sm) in [("compute_80", "sm_80"), ("compute_90", "sm_90")] {
        for (file, src, kernels) in SOURCES {
            // No cache: NVRTC compiles every kernel here.
            let ptx = compile_cached(file, src, arch, None)
                .unwrap_or_else(|e| panic!("{file} for {arch}: {e}"));
            for k in kernels {
                assert!(
                    ptx.contains(&format!(".entry {k}(")),
                    "{file}: no entry {k} in the PTX"
                );
            }
            let Some(ptxas) = &ptxas else { continue };
            let path = dir.path().join(format!("{file}.{sm}.ptx"));
            std::fs::write(&path, &ptx).unwrap();
            let out = Command::new(ptxas)
                .args(["-v", &format!("-arch={sm}"), "-o", "/dev/null"])
                .arg(&path)
                .output()
                .unwrap();
            let log = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "ptxas {file} {sm}:\n{log}");
            let mut current = String::new();
            for line in log.lines() {
                if let Some(rest) = line.split("Compiling entry function '").nth(1) {
                    current = rest.split('\'').next().unwrap_or("").to_string();
                }
                if line.contains("Used") && line.contains("registers") {
                    eprintln!("{sm} {current}: {}", line.trim());
                }
                if line.contains("spill") {
                    assert!(
                        line.contains("0 bytes spill stores, 0 bytes spill loads"),
                        "{sm} {current} spills: {line}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_corrupt_cached_ptx_is_compiled_again_and_replaced() {
    if !nvrtc_present() {
        skip_or_fail("libnvrtc not found; `. .ci/env.sh` puts it on LD_LIBRARY_PATH");
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let (file, src, kernels) = SOURCES[0];
    let fresh = compile_cached(file, src, "compute_80", Some(cache.path())).unwrap();
    let files: Vec<PathBuf> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one cache file, no temporaries: {files:?}");
    let path = &files[0];
    let good = std::fs::read(path).unwrap();
    // A flipped byte in the PTX, a torn write, and junk: each is compiled
    // again (same PTX as NVRTC gives) and the file is mended.
    let mut flipped = good.clone();
    let at = good.len() - 10;
    flipped[at] ^= 0x01;
    for bad in [
        flipped,
        good[..good.len() / 2].to_vec(),
        b"garbage".to_vec(),
    ] {
        std::fs::write(path, &bad).unwrap();
        let again = compile_cached(file, src, "compute_80", Some(cache.path())).unwrap();
        assert_eq!(again, fresh);
        assert!(again.contains(&format!(".entry {}(", kernels[0])));
        assert_eq!(
            std::fs::read(path).unwrap(),
            good,
            "the cache file was rewritten"
        );
    }
    // A good file is served as it is.
    assert_eq!(
        compile_cached(file, src, "compute_80", Some(cache.path())).unwrap(),
        fresh
    );
}
