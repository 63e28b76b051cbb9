"""Benchmark of `nasbench.api` side by side with the original API (under the
TensorFlow stand-in in tests/reference), each figure in a fresh process.

    python python/bench.py FILE.tfrecord [--queries 200000] [--no-original]

Prints: first open (index built from the file), later open (index mapped),
query() calls per second on one core called as the original is (a new
ModelSpec per call, from nested lists), and the peak memory of a later open
plus 20,000 queries. Make FILE with `nasbench synth -o FILE` (the size of
nasbench_only108.tfrecord) or `nasbench synth --full -o FILE`.
"""

import argparse
import json
import os
import pickle
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(HERE, "tests", "reference")

CHILD = r"""
import contextlib, io, json, pickle, sys, time
path, what, n, specs_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
from nasbench import api
with open(specs_file, "rb") as f:
    cells = pickle.load(f)
t0 = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    nb = api.NASBench(path, seed=0)
out = {"open_s": time.perf_counter() - t0}
if what == "query":
    t0 = time.perf_counter()
    for i in range(n):
        m, o = cells[i % len(cells)]
        nb.query(api.ModelSpec(matrix=m, ops=o))
    out["queries_per_s"] = n / (time.perf_counter() - t0)
elif what == "rss":
    for m, o in cells[:20000]:
        nb.query(api.ModelSpec(m, o))
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
# VmHWM, this process image's own peak: ru_maxrss also keeps the benchmark
# parent's RSS at the fork, which Linux carries across exec.
out["peak_rss_mb"] = int(status["VmHWM"].split()[0]) / 1024
out["anon_mb"] = int(status.get("RssAnon", "0 kB").split()[0]) / 1024
out["file_mb"] = int(status.get("RssFile", "0 kB").split()[0]) / 1024
print(json.dumps(out))
"""


def child(path, what, n, original, specs_file):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if original:
        env["PYTHONPATH"] = os.pathsep.join(
            [os.path.join(REFERENCE, "tf_shim"), os.path.join(REFERENCE, "nasbench-seed")]
        )
    r = subprocess.run(
        [sys.executable, "-c", CHILD, path, what, str(n), specs_file],
        env=env, capture_output=True, text=True, cwd="/",
    )
    if r.returncode != 0:
        sys.exit("benchmark child failed:\n" + r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--queries", type=int, default=200000)
    ap.add_argument("--original-queries", type=int, default=20000)
    ap.add_argument("--no-original", action="store_true", help="skip the original API (20 s, 1.4 GB)")
    a = ap.parse_args()
    path = os.path.abspath(a.file)
    for stale in (path + ".qidx",):
        if os.path.exists(stale):
            os.remove(stale)
    ours = {}
    specs_file = path + ".bench-specs.pickle"
    with open(specs_file, "wb") as f:
        pickle.dump([], f)
    ours["first_open_s"] = child(path, "open", 0, False, specs_file)["open_s"]
    # 20,000 random cells (in their stored form) for the query runs.
    sys.path.insert(0, HERE)
    import contextlib
    import io
    import random

    from nasbench import api

    with contextlib.redirect_stdout(io.StringIO()):
        nb = api.NASBench(path)
    rng = random.Random(1)
    hashes = rng.sample(list(nb.hash_iterator()), min(20000, len(nb.fixed_statistics)))
    cells = []
    for h in hashes:
        fixed = nb.fixed_statistics[h]
        cells.append((fixed["module_adjacency"].tolist(), list(fixed["module_operations"])))
    del nb
    with open(specs_file, "wb") as f:
        pickle.dump(cells, f)
    ours["later_open_s"] = min(child(path, "open", 0, False, specs_file)["open_s"] for _ in range(3))
    ours["queries_per_s"] = child(path, "query", a.queries, False, specs_file)["queries_per_s"]
    r = child(path, "rss", 0, False, specs_file)
    ours["later_open_20k_peak_rss_mb"] = r["peak_rss_mb"]
    ours["of which mapped index file (MB, at the end)"] = r["file_mb"]
    ours["of which private memory (MB, at the end)"] = r["anon_mb"]
    rows = [("first open (s)", "first_open_s"), ("later open (s)", "later_open_s"),
            ("query() calls/s", "queries_per_s"), ("later open + 20k queries, peak MB", "later_open_20k_peak_rss_mb"),
            ("  file-backed (mapped index, libs), MB", "of which mapped index file (MB, at the end)"),
            ("  private, MB", "of which private memory (MB, at the end)")]
    orig = None
    if not a.no_original:
        o = child(path, "query", a.original_queries, True, specs_file)
        orig = {"first_open_s": o["open_s"], "later_open_s": o["open_s"],
                "queries_per_s": o["queries_per_s"], "later_open_20k_peak_rss_mb": o["peak_rss_mb"]}
    print("%-36s %14s %14s %8s" % ("file: " + os.path.basename(path), "nasbench", "original", "ratio"))
    for label, key in rows:
        mine = ours[key]
        if orig and key in orig:
            theirs = orig[key]
            ratio = theirs / mine if key != "queries_per_s" else mine / theirs
            print("%-36s %14.3f %14.3f %7.1fx" % (label, mine, theirs, ratio))
        else:
            print("%-36s %14.3f" % (label, mine))
    os.remove(specs_file)


if __name__ == "__main__":
    main()
