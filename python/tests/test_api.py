"""`nasbench.api` against the original API itself (run under the TensorFlow
stand-in), on the real sample and on synthetic release files."""

import os
import random
import shutil

import numpy as np
import pytest

import scenario
from conftest import ROOT, run_oracle, synth
from nasbench import api

OPS = ["conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"]


def same(a, b, where="result"):
    """Exact equality, types included (numpy dtypes, int vs float)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype and a.shape == b.shape, (where, a, b)
        assert np.array_equal(a, b), (where, a, b)
        return
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, "%s[%d]" % (where, i))
        return
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), (where, list(a), b)
        for k in a:
            same(a[k], b[k], "%s[%r]" % (where, k))
        return
    assert type(a) is type(b), (where, a, b)
    assert a == b, (where, a, b)


def topological_form(matrix, ops, rng):
    """An isomorphic form: the interior vertices in another topological order."""
    n = len(ops)
    m = np.array(matrix)
    indeg = {v: int(m[:, v].sum()) for v in range(n)}
    order, ready = [], [0]
    while ready:
        v = ready.pop(rng.randrange(len(ready)) if ready[0] != 0 else 0)
        order.append(v)
        for w in range(n):
            if m[v, w]:
                indeg[w] -= 1
                if indeg[w] == 0 and w != n - 1:
                    ready.append(w)
    order.append(n - 1)
    pos = {v: i for i, v in enumerate(order)}
    out = [[0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            if m[i, j]:
                out[pos[i]][pos[j]] = 1
    return out, [ops[v] for v in order]


def with_dangling_vertex(matrix, ops, rng):
    """The cell plus a vertex fed by the input that reaches nothing: pruned away."""
    n = len(ops)
    out = [list(r[:-1]) + [0, r[-1]] for r in matrix] + [[0] * (n + 1)]
    out[0][n - 1] = 1
    return out, ops[:-1] + [rng.choice(OPS), ops[-1]]


def calls_for(cells, epochs, rng, n=400):
    """A long seeded mix of every kind of call."""
    calls = []
    for _ in range(n):
        m, o = rng.choice(cells)
        m = [list(map(int, r)) for r in m]
        k = rng.random()
        if k < 0.40:
            form = rng.choice([lambda: (m, o), lambda: topological_form(m, o, rng)])()
            if len(o) < 7 and rng.random() < 0.3:
                form = with_dangling_vertex(form[0], form[1], rng)
            e = rng.choice(epochs + [5, float(epochs[-1])])
            how = rng.random()
            if how < 0.15:
                halfway = rng.choice([0, 1, "", "yes", None, True, False])
                calls.append(("query_kw", form[0], form[1], e, halfway, rng.random() < 0.5))
            elif how < 0.22:
                calls.append(("patched_randint", form[0], form[1], e))
            else:
                calls.append(("query", form[0], form[1], e, rng.random() < 0.3))
        elif k < 0.50:
            bad = [row[:] for row in m]
            for row in bad:
                row[-1] = 0  # nothing reaches the output
            choice = rng.randrange(5)
            if choice == 0:
                calls.append(("query", bad, o, epochs[0], False))
            elif choice == 1:
                calls.append(("query", m, o[:1] + ["conv5x5"] + o[2:], epochs[0], False))
            elif choice == 2:
                full = [[1 if j > i else 0 for j in range(7)] for i in range(7)]
                calls.append(("query", full, ["input"] + OPS + OPS[:2] + ["output"], epochs[0], False))
            elif choice == 3:
                calls.append(("query", [[0, 1], [0, 0]], ["input", "output"], epochs[0], False))
            else:
                calls.append(("query", m, ["output"] + o[1:], epochs[-1], True))
        elif k < 0.55:
            calls.append(("user_draws", rng.randrange(1, 4)))
        elif k < 0.57:
            calls.append(("reseed", rng.randrange(10)))
        elif k < 0.60:
            calls.append(("reset",))
        elif k < 0.66:
            calls.append(("is_valid", m, o if rng.random() < 0.7 else o[:1] + ["conv5x5"] + o[2:]))
        elif k < 0.72:
            calls.append(("spec", *topological_form(m, o, rng)))
        elif k < 0.78:
            calls.append(("metrics_spec", *topological_form(m, o, rng)))
        elif k < 0.86:
            calls.append(("hash_spec", *topological_form(m, o, rng)))
        else:
            calls.append((rng.choice(["metrics_hash", "fixed", "computed"]), None))
    return calls


def compare_with_original(path, seed, tmp_path, n=400):
    nb = api.NASBench(path, seed=0)
    hashes = list(nb.hash_iterator())
    cells = [
        (s["module_adjacency"].tolist(), s["module_operations"])
        for s in (nb.fixed_statistics[h] for h in hashes)
    ]
    rng = random.Random(seed)
    calls = calls_for(cells, sorted(nb.valid_epochs), rng, n)
    # Hash lookups: known, unknown and malformed hashes.
    calls = [
        (c[0], rng.choice(hashes + ["0" * 32, "not-a-hash"])) if c[1:] == (None,) else c
        for c in calls
    ]
    chain = [[1 if j == i + 1 else 0 for j in range(7)] for i in range(7)]
    calls += [
        ("metrics_hash", "0" * 32),
        ("fixed", "not-a-hash"),
        ("computed", hashes[-1]),
        ("query", chain, ["input"] + ["maxpool3x3"] * 5 + ["output"], sorted(nb.valid_epochs)[-1], False),
    ]
    want = run_oracle(path, seed, calls, tmp_path)
    got = scenario.run(api, path, seed, calls)
    assert len(got) == len(want)
    answered = sum(1 for w in want if w[0] == "ok" and isinstance(w[1], dict))
    errors = {w[1] for w in want if w[0] == "err"}
    for i, (g, w) in enumerate(zip(got, want)):
        same(g, w, "call %d" % i)
    return answered, errors


def test_real_sample_answers_like_the_original(sample, tmp_path):
    answered, errors = compare_with_original(sample, 20181101, tmp_path)
    assert answered >= 60
    assert {"OutOfDomainError", "KeyError"} <= errors


def test_synthetic_full_file_answers_like_the_original(tmp_path):
    path = synth(tmp_path / "full.tfrecord", "--full", "--cells", "400")
    answered, errors = compare_with_original(path, 7, tmp_path, n=600)
    assert answered > 150
    assert {"OutOfDomainError", "KeyError"} <= errors


def test_missing_repeats_fail_as_in_the_original(tmp_path):
    # Two repeats per budget: a draw of the third is the original's IndexError.
    path = synth(tmp_path / "two.tfrecord", "--budgets", "4,108", "--repeats", "2", "--cells", "50")
    answered, errors = compare_with_original(path, 3, tmp_path, n=300)
    assert "IndexError" in errors and answered > 30


def test_the_original_example_prints_the_same(sample, tmp_path):
    """example.py with only its path changed: the same output apart from the
    load time and the unseeded draw (the query's point and the counters)."""
    outs = run_example(sample, tmp_path, None)
    assert len(outs[0]) > 40

    def stable(lines):
        return [l for l in lines if "'training_time'" not in l and not l.startswith("(")]

    assert stable(outs[0]) == stable(outs[1])


def run_example(sample, tmp_path, seed):
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    src = open(os.path.join(here, "reference", "nasbench-seed", "example.py")).read()
    src = src.replace("/path/to/nasbench.tfrecord", sample)
    if seed is not None:
        src = src.replace("api.NASBench(NASBENCH_TFRECORD)", "api.NASBench(NASBENCH_TFRECORD, seed=%d)" % seed)
    script = tmp_path / "example.py"
    script.write_text(src)
    orig_env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(here, "reference", "tf_shim"), os.path.join(here, "reference", "nasbench-seed")]))
    ours_env = dict(os.environ)
    ours_env.pop("PYTHONPATH", None)
    outs = []
    for e in (orig_env, ours_env):
        r = subprocess.run([sys.executable, str(script)], env=e, capture_output=True, text=True, check=True)
        outs.append([l for l in r.stdout.splitlines() if not l.startswith("Loaded dataset in")])
    return outs


def test_seeded_example_prints_exactly_the_same(sample, tmp_path):
    outs = run_example(sample, tmp_path, 5)
    assert len(outs[0]) > 40
    assert outs[0] == outs[1]


def test_batches_draw_and_count_like_single_calls(sample):
    nb = api.NASBench(sample, seed=11)
    cells = [nb.fixed_statistics[h] for h in nb.hash_iterator()]
    specs = [api.ModelSpec(c["module_adjacency"], c["module_operations"]) for c in cells] * 20
    one = [nb.query(s) for s in specs]
    counters = nb.get_budget_counters()
    nb2 = api.NASBench(sample, seed=11)
    batch = nb2.query_batch(specs)
    assert nb2.get_budget_counters() == counters
    assert batch["test_accuracy"].tolist() == [d["test_accuracy"] for d in one]
    assert batch["training_time"].dtype == np.float64
    nb3 = api.NASBench(sample, seed=11)
    by_hash = nb3.query_hashes([s.hash_spec(nb3.config["available_ops"]) for s in specs])
    assert by_hash["validation_accuracy"].tolist() == [d["validation_accuracy"] for d in one]
    # An error mid-batch: raised after counting the answers before it.
    nb4 = api.NASBench(sample, seed=11)
    with pytest.raises(KeyError):
        nb4.query_hashes([by_hash["module_hash"][0], "0" * 32])
    assert nb4.get_budget_counters()[1] == 108


def test_tables_hold_what_the_metrics_hold(sample):
    pa = pytest.importorskip("pyarrow")
    nb = api.NASBench(sample)
    models = nb.models()
    assert models.column("module_hash").to_pylist() == list(nb.hash_iterator())
    runs = nb.runs()
    assert isinstance(runs, pa.Table)
    for h in nb.hash_iterator():
        _, computed = nb.get_metrics_from_hash(h)
        rows = [r for r in runs.to_pylist() if r["module_hash"] == h]
        assert len(rows) == sum(len(v) for v in computed.values())
        for r in rows:
            d = computed[r["epochs"]][r["repeat"] - 1]
            assert r["final_test_accuracy"] == d["final_test_accuracy"]
            assert r["halfway_training_time"] == d["halfway_training_time"]
    df = runs.to_pandas()
    assert len(df) == runs.num_rows == 18
    import polars as pl

    assert pl.from_arrow(models).height == 3


def test_sql_connection_has_the_data_and_functions(sample):
    pytest.importorskip("duckdb")
    nb = api.NASBench(sample)
    con = nb.sql()
    n, = con.execute("SELECT count(*) FROM runs WHERE epochs = 108").fetchone()
    assert n == 9
    h, = con.execute(
        "SELECT nasbench_hash([[0,1,1,1,0,1,0],[0,0,0,0,0,0,1],[0,0,0,0,0,0,1],"
        "[0,0,0,0,1,0,0],[0,0,0,0,0,0,1],[0,0,0,0,0,0,1],[0,0,0,0,0,0,0]], "
        "['input','conv1x1-bn-relu','conv3x3-bn-relu','conv3x3-bn-relu','conv3x3-bn-relu',"
        "'maxpool3x3','output'])"
    ).fetchone()
    assert h == "28cfc7874f6d200472e1a9dcd8650aa0"  # the README's cell (SPEC.md)
    joined, = con.execute(
        "SELECT count(*) FROM models m JOIN runs r USING (module_hash)"
    ).fetchone()
    assert joined == 18


def test_statistics_are_read_only_mappings(sample):
    nb = api.NASBench(sample)
    h = next(iter(nb.hash_iterator()))
    with pytest.raises(TypeError):
        nb.fixed_statistics[h] = {}
    fixed = nb.fixed_statistics[h]
    fixed["trainable_parameters"] = -1  # a copy, as get_metrics_from_hash's
    assert nb.fixed_statistics[h]["trainable_parameters"] != -1
    assert len(nb.fixed_statistics) == 3 and h in nb.computed_statistics
    assert "0" * 32 not in nb.fixed_statistics


def test_later_opens_map_the_index(sample):
    first = api._core.Dataset(sample)
    assert first.built and first.index_path == sample + ".qidx"
    again = api._core.Dataset(sample)
    assert not again.built
    # A changed file is never answered from the stale index.
    os.utime(sample, (1, 1))
    assert api._core.Dataset(sample).built


def test_an_unwritable_place_caches_the_index_in_the_user_cache(sample, tmp_path, monkeypatch):
    # Something that is not a file where the index would go (as root, a
    # folder's mode does not stop writes; this does).
    os.mkdir(sample + ".qidx")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ds = api._core.Dataset(sample)
    assert ds.built and ds.index_path.startswith(str(tmp_path / "cache" / "nasbench")), ds.index_path
    again = api._core.Dataset(sample)
    assert not again.built and again.index_path == ds.index_path


@pytest.mark.parametrize("damage", ["flip", "truncate", "foreign", "empty"])
def test_damaged_files_raise_a_clear_error(tmp_path, damage):
    data = open(os.path.join(ROOT, "tests", "fixtures", "nasbench_real_sample.tfrecord"), "rb").read()
    path = tmp_path / "bad.tfrecord"
    if damage == "flip":
        b = bytearray(data)
        b[len(b) // 3] ^= 0x10
        data = bytes(b)
    elif damage == "truncate":
        data = data[: len(data) - 11]
    elif damage == "foreign":
        data = b"PK\x03\x04 this is a zip file, not a TFRecord" * 20
    else:
        data = b""
    path.write_bytes(data)
    with pytest.raises(api.DatasetError) as e:
        api.NASBench(str(path))
    assert "bad.tfrecord" in str(e.value)
    with pytest.raises(FileNotFoundError):
        api.NASBench(str(tmp_path / "missing.tfrecord"))


def test_corrupt_index_is_rebuilt_never_wrong(sample):
    nb = api.NASBench(sample, seed=1)
    want = [nb.get_metrics_from_hash(h) for h in nb.hash_iterator()]
    qidx = sample + ".qidx"
    b = bytearray(open(qidx, "rb").read())
    for k in range(64, len(b), 97):
        b[k] ^= 0xFF
    open(qidx, "wb").write(bytes(b))
    os.utime(qidx)
    try:
        nb2 = api.NASBench(sample, seed=1)
        got = [nb2.get_metrics_from_hash(h) for h in nb2.hash_iterator()]
    except api.DatasetError as e:
        assert ".qidx" in str(e)
        return
    for g, w in zip(got, want):
        same(g, w)


def test_specs_behave_as_the_originals(tmp_path):
    s = api.ModelSpec(np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=np.int8), ["input", "conv3x3-bn-relu", "output"])
    assert s.matrix.dtype == np.int8 and s.original_matrix.dtype == np.int8
    with pytest.raises(ValueError, match="matrix must be square"):
        api.ModelSpec([[0, 1], [0, 0], [0, 0]], ["input", "x", "output"])
    with pytest.raises(ValueError, match="length of ops must match"):
        api.ModelSpec([[0, 1], [0, 0]], ["input", "x", "output"])
    with pytest.raises(ValueError, match="upper triangular"):
        api.ModelSpec([[0, 0], [1, 0]], ["input", "output"])
    invalid = api.ModelSpec([[0, 0, 0], [0, 0, 1], [0, 0, 0]], ["input", "conv3x3-bn-relu", "output"])
    assert invalid.matrix is None and invalid.ops is None and not invalid.valid_spec
    # An assigned attribute is what a query reads, as in the original.
    s.ops = ["input", "maxpool3x3", "output"]
    assert s.hash_spec(OPS) == api.ModelSpec([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", "maxpool3x3", "output"]).hash_spec(OPS)
    # The same for a spec from nested lists of the dataset's ops (kept in
    # compact form until an attribute is read or assigned).
    t = api.ModelSpec([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", "conv3x3-bn-relu", "output"])
    t.ops = ["input", "maxpool3x3", "output"]
    assert t.hash_spec(OPS) == s.hash_spec(OPS)
    t.matrix = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    assert t.hash_spec(OPS) == api.ModelSpec([[0, 1, 1], [0, 0, 1], [0, 0, 0]], ["input", "maxpool3x3", "output"]).hash_spec(OPS)
    u = api.ModelSpec([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", "conv3x3-bn-relu", "output"])
    assert u.original_ops == ["input", "conv3x3-bn-relu", "output"] and u.ops == u.original_ops
    assert u.matrix.tolist() == [[0, 1, 0], [0, 0, 1], [0, 0, 0]] and u.valid_spec
    u.valid_spec = False
    assert not u.valid_spec and u.matrix.tolist() == [[0, 1, 0], [0, 0, 1], [0, 0, 0]]
    with pytest.raises(ValueError, match="matrix must be square"):
        api.ModelSpec([], [])
    empty = api.ModelSpec(np.zeros((0, 0), dtype=int), [])
    assert not empty.valid_spec and empty.matrix is None
    try:
        import graphviz  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="graphviz"):
            s.visualize()
    assert "ModelSpec" in api.ModelSpec.__doc__ or "Model specification" in api.ModelSpec.__doc__
    assert "dataset_file" in api.NASBench.__doc__


def test_more_than_seven_vertices_is_out_of_domain(sample):
    # The original raises a TypeError here (its message formats with the
    # `config` module instead of the config dict); ours gives the message it meant.
    nb = api.NASBench(sample)
    n = 8
    m = [[1 if j == i + 1 else 0 for j in range(n)] for i in range(n)]
    with pytest.raises(api.OutOfDomainError, match=r"too many vertices, got 8 \(max vertices = 7\)"):
        nb.query(api.ModelSpec(m, ["input"] + ["conv3x3-bn-relu"] * 6 + ["output"]))


def test_evaluate_names_the_train_command(sample):
    with pytest.raises(NotImplementedError, match="nasbench train"):
        api.NASBench(sample).evaluate(None, "/tmp")


def test_stubs_ship_with_the_package():
    import nasbench

    pkg = os.path.dirname(nasbench.__file__)
    assert os.path.exists(os.path.join(pkg, "py.typed"))
    stub = open(os.path.join(pkg, "api.pyi")).read()
    for name in ("class NASBench", "class ModelSpec", "def query", "def query_batch", "def sql"):
        assert name in stub


def test_query_is_a_method_that_subclasses_can_override_and_help_documents(sample):
    class Counting(api.NASBench):
        def query(self, model_spec, epochs=108, stop_halfway=False):
            self.calls = getattr(self, "calls", 0) + 1
            return super().query(model_spec, epochs, stop_halfway)

    nb = Counting(sample, seed=0)
    h = next(iter(nb.hash_iterator()))
    fixed = nb.fixed_statistics[h]
    spec = api.ModelSpec(fixed["module_adjacency"], fixed["module_operations"])
    data = nb.query(spec)
    assert nb.calls == 1 and data["training_time"] == nb.training_time_spent
    # The unbound form, as in api.NASBench.query(nb, spec).
    api.NASBench.query(nb, spec, stop_halfway=True)
    assert nb.calls == 1 and nb.total_epochs_spent == 108 + 54
    doc = api.NASBench.query.__doc__
    assert "Fetch one of the evaluations" in doc and "OutOfDomainError" in doc
    assert api.NASBench.query.__text_signature__ == "($self, model_spec, epochs=108, stop_halfway=False)"


class TaggedSpec(api.ModelSpec):
    """A user's subclass whose constructor takes other arguments (no
    data_format), which unpickling must not call."""

    def __init__(self, matrix, ops):
        super().__init__()
        self.tag = "mine"


def test_specs_pickle_with_every_attribute(sample):
    """A pickled spec (search code keeps histories of them) comes back with
    the original's attributes, assigned ones and the user's own included,
    and answers queries as before."""
    import pickle

    nb = api.NASBench(sample, seed=0)
    fixed, _ = nb.get_metrics_from_hash(next(iter(nb.hash_iterator())))
    m, o = fixed["module_adjacency"], list(fixed["module_operations"])
    assigned = api.ModelSpec(m.tolist(), o)
    assigned.ops = list(o)
    assigned.tag = {"generation": 3}
    specs = [
        api.ModelSpec(m.tolist(), o),
        api.ModelSpec(m.astype(np.int8), o),
        assigned,
        api.ModelSpec([[0, 0, 0], [0, 0, 1], [0, 0, 0]], ["input", "conv3x3-bn-relu", "output"]),
        TaggedSpec(m.tolist(), o),
    ]
    for s in specs:
        t = pickle.loads(pickle.dumps(s))
        assert type(t) is type(s) and t.__dict__ == s.__dict__
        for name in ("original_matrix", "matrix"):
            a, b = getattr(s, name), getattr(t, name)
            assert (a is None and b is None) or (np.array_equal(a, b) and a.dtype == b.dtype), name
        for name in ("original_ops", "ops", "valid_spec", "data_format"):
            assert getattr(t, name) == getattr(s, name), name
        if s.valid_spec:
            random.seed(7)
            want = nb.query(s)
            random.seed(7)
            same(nb.query(t), want)
        else:
            with pytest.raises(api.OutOfDomainError):
                nb.query(t)
