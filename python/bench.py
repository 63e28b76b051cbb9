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
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(HERE, "tests", "reference")

CHILD = r"""
import json, os, random, resource, sys, time
path, what, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.perf_counter()
from nasbench import api
import io, contextlib
with contextlib.redirect_stdout(io.StringIO()):
    nb = api.NASBench(path, seed=0)
opened = time.perf_counter() - t0
out = {"open_s": opened}
if what == "query":
    hashes = list(nb.hash_iterator())
    rng = random.Random(1)
    cells = []
    for h in rng.sample(hashes, min(len(hashes), 20000)):
        f = nb.fixed_statistics[h]
        cells.append((f["module_adjacency"].tolist(), list(f["module_operations"])))
    t0 = time.perf_counter()
    for i in range(n):
        m, o = cells[i % len(cells)]
        nb.query(api.ModelSpec(matrix=m, ops=o))
    out["queries_per_s"] = n / (time.perf_counter() - t0)
elif what == "rss":
    hashes = list(nb.hash_iterator())[:20000]
    specs = []
    for h in hashes:
        f = nb.fixed_statistics[h]
        specs.append((f["module_adjacency"].tolist(), list(f["module_operations"])))
    for m, o in specs:
        nb.query(api.ModelSpec(m, o))
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def child(path, what, n, original):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if original:
        env["PYTHONPATH"] = os.pathsep.join(
            [os.path.join(REFERENCE, "tf_shim"), os.path.join(REFERENCE, "nasbench-seed")]
        )
    r = subprocess.run(
        [sys.executable, "-c", CHILD, path, what, str(n)],
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
    ours["first_open_s"] = child(path, "open", 0, False)["open_s"]
    ours["later_open_s"] = min(child(path, "open", 0, False)["open_s"] for _ in range(3))
    ours["queries_per_s"] = child(path, "query", a.queries, False)["queries_per_s"]
    ours["later_open_20k_peak_rss_mb"] = child(path, "rss", 0, False)["peak_rss_mb"]
    rows = [("first open (s)", "first_open_s"), ("later open (s)", "later_open_s"),
            ("query() calls/s", "queries_per_s"), ("later open + 20k queries, peak MB", "later_open_20k_peak_rss_mb")]
    orig = None
    if not a.no_original:
        o = child(path, "query", a.original_queries, True)
        orig = {"first_open_s": o["open_s"], "later_open_s": o["open_s"],
                "queries_per_s": o["queries_per_s"], "later_open_20k_peak_rss_mb": o["peak_rss_mb"]}
    print("%-36s %14s %14s %8s" % ("file: " + os.path.basename(path), "nasbench", "original", "ratio"))
    for label, key in rows:
        mine = ours[key]
        if orig:
            theirs = orig[key]
            ratio = theirs / mine if key != "queries_per_s" else mine / theirs
            print("%-36s %14.3f %14.3f %7.1fx" % (label, mine, theirs, ratio))
        else:
            print("%-36s %14.3f" % (label, mine))


if __name__ == "__main__":
    main()
