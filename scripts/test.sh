#!/usr/bin/env bash
# Every test, as CI runs them (README: the second command). Sets up what the
# tests need in a project-local .venv (the stock DuckDB CLI, Python duckdb,
# the notebook packages, NVRTC and ptxas, pytest and the original API's
# dependencies) and, run as root, Slurm from apt; builds the Python package
# into the .venv, then runs the Rust tests and the Python tests. Only the GPU
# tests print SKIPPED, on machines without a CUDA driver (and the Slurm test
# without root). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "test: cargo not found (https://rustup.rs)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "test: python3 not found" >&2; exit 1; }

PY_PACKAGES="duckdb-cli duckdb nbclient nbconvert ipykernel pandas polars matplotlib pyarrow \
nvidia-cuda-nvrtc-cu12 nvidia-cuda-nvcc-cu12 maturin pytest numpy protobuf absl-py"
venv_ready() {
    [ -x .venv/bin/duckdb ] && [ -x .venv/bin/maturin ] \
    && .venv/bin/python -c "import duckdb, nbclient, nbconvert, ipykernel, pandas, polars, matplotlib, pyarrow, pytest, numpy, google.protobuf, absl" 2>/dev/null \
    && ls .venv/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.* >/dev/null 2>&1 \
    && ls .venv/lib/python3*/site-packages/nvidia/cuda_nvcc/bin/ptxas >/dev/null 2>&1
}

# The downloads (PyPI, apt) run in the background while the tests compile,
# which keeps both cores busy; each is waited for, and its log shown if it
# fails, before the first test that needs it.
SETUP_LOGS="$(mktemp -d)"
trap 'rm -rf "$SETUP_LOGS"' EXIT
PIP_PID=""
if ! venv_ready; then
    echo "== setting up .venv in the background (PyPI: $PY_PACKAGES)"
    python3 -m venv .venv
    .venv/bin/pip install -q $PY_PACKAGES >"$SETUP_LOGS/pip" 2>&1 &
    PIP_PID=$!
fi

# Slurm and munge for tests/slurm.rs, which starts a single-node cluster
# itself (scripts/slurm/local-cluster.sh): installed from apt when this runs
# as root, and then that test must run. Without root it prints SKIPPED with
# what it needs, as the GPU tests do without a driver.
APT_PID=""
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        echo "== installing slurm-wlm and munge (apt) in the background, for the Slurm test"
        (
            export DEBIAN_FRONTEND=noninteractive
            apt-get install -y -q slurm-wlm munge \
                || { apt-get update -q && apt-get install -y -q slurm-wlm munge; }
        ) >"$SETUP_LOGS/apt" 2>&1 &
        APT_PID=$!
    fi
    export NASBENCH_REQUIRE_SLURM=1
fi

# wait_setup PID NAME: fails the run, with that download's log, if it failed.
wait_setup() {
    [ -n "$1" ] || return 0
    if ! wait "$1"; then
        echo "test: setting up $2 failed:" >&2
        cat "$SETUP_LOGS/$2" >&2
        exit 1
    fi
}

# The build environment is the caller's: the same target directory and
# compilers as a plain `cargo run -- demo`, so the bundled DuckDB is never
# compiled twice (`. .ci/env.sh` first moves both, for every command).
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"

echo "== cargo test --all-features (compiling)"
cargo test --all-features --no-run
wait_setup "$PIP_PID" pip
wait_setup "$APT_PID" apt
. scripts/nvrtc-env.sh
echo "== cargo test --all-features"
cargo test --all-features

# The package's crate builds in the same target directory, with the same
# dev profile, so it reuses the dependencies the Rust tests compiled.
echo "== the Python package (python/) into .venv, and its tests"
(cd python && VIRTUAL_ENV="$PWD/../.venv" CARGO_TARGET_DIR="$TARGET" \
    ../.venv/bin/maturin develop -q)
NASBENCH_BIN="$TARGET/debug/nasbench" .venv/bin/python -m pytest -q python/tests
