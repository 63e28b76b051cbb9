"""Shared fixtures: the repository's files, the `nasbench` command (for
synthetic release files) and the original API run as an oracle."""

import os
import pickle
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SAMPLE = os.path.join(ROOT, "tests", "fixtures", "nasbench_real_sample.tfrecord")


def nasbench_bin():
    """The `nasbench` command: $NASBENCH_BIN, else the cargo build's."""
    if os.environ.get("NASBENCH_BIN"):
        return os.environ["NASBENCH_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    for profile in ("debug", "release"):
        p = os.path.join(target, profile, "nasbench")
        if os.path.exists(p):
            return p
    found = shutil.which("nasbench")
    if found:
        return found
    pytest.fail("the nasbench command is not built: run `cargo build` or set NASBENCH_BIN")


def synth(path, *args):
    """A synthetic release file written by `nasbench synth`."""
    subprocess.run([nasbench_bin(), "synth", "-q", "-o", str(path), *args], check=True)
    return str(path)


def run_oracle(path, seed, calls, tmp_path):
    """The scenario's outcome from the original API (in a subprocess: it is
    also named `nasbench`)."""
    calls_file = tmp_path / "calls.pickle"
    out_file = tmp_path / "oracle.pickle"
    with open(calls_file, "wb") as f:
        pickle.dump(calls, f)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    subprocess.run(
        [sys.executable, os.path.join(HERE, "oracle.py"), path, str(seed), str(calls_file), str(out_file)],
        check=True, env=env, stdout=subprocess.DEVNULL,
    )
    with open(out_file, "rb") as f:
        return pickle.load(f)


@pytest.fixture
def sample(tmp_path):
    """The real sample, copied where its index may be written."""
    p = tmp_path / "sample.tfrecord"
    shutil.copy(SAMPLE, p)
    return str(p)
