"""User interface for the NAS-Bench-101 dataset, without TensorFlow.

A drop-in for the original release's ``nasbench.api``::

    from nasbench import api

    nasbench = api.NASBench('/path/to/nasbench_only108.tfrecord', seed=0)
    spec = api.ModelSpec(
        matrix=[[0, 1, 1, 1, 0, 1, 0],
                [0, 0, 0, 0, 0, 0, 1],
                [0, 0, 0, 0, 0, 0, 1],
                [0, 0, 0, 0, 1, 0, 0],
                [0, 0, 0, 0, 0, 0, 1],
                [0, 0, 0, 0, 0, 0, 1],
                [0, 0, 0, 0, 0, 0, 0]],
        ops=['input', 'conv1x1-bn-relu', 'conv3x3-bn-relu', 'conv3x3-bn-relu',
             'conv3x3-bn-relu', 'maxpool3x3', 'output'])
    data = nasbench.query(spec)

``NASBench`` opens the release ``.tfrecord`` files directly, a database
written by ``nasbench ingest``, or its Parquet folder. The first open of a
release file builds a query index (``<file>.qidx`` beside it, or under the
user's cache folder when that folder is read-only); later opens map it in
milliseconds. The answers, the error messages and the draws are the
original's: the constructor calls ``random.seed(seed)`` on Python's global
``random`` and every ``query`` calls ``random.randint(0, 2)``, so a seeded
experiment gives the original's results draw for draw.

Beyond the original: ``query_batch`` and ``query_hashes`` (many answers as
numpy arrays, same draws and counters), ``models()`` and ``runs()`` (the
dataset as a pyarrow Table, ``.to_pandas()`` / ``polars.from_arrow``), and
``sql()`` (a ``duckdb`` connection with the dataset and the nasbench SQL
functions).
"""

import collections.abc
import random
import time

import numpy as np

from nasbench import _core

__all__ = ["NASBench", "ModelSpec", "OutOfDomainError", "DatasetError"]

OutOfDomainError = _core.OutOfDomainError
OutOfDomainError.__module__ = __name__
DatasetError = _core.DatasetError
DatasetError.__module__ = __name__

INPUT = "input"
OUTPUT = "output"
CONV1X1 = "conv1x1-bn-relu"
CONV3X3 = "conv3x3-bn-relu"
MAXPOOL3X3 = "maxpool3x3"


def _build_config():
    """The original's ``config.build_config()``: its flags' defaults, in its order."""
    return {
        "train_data_files": [],
        "valid_data_file": "",
        "test_data_file": "",
        "sample_data_file": "",
        "data_format": "channels_last",
        "num_labels": 10,
        "module_vertices": 7,
        "max_edges": 9,
        "available_ops": [CONV3X3, CONV1X1, MAXPOOL3X3],
        "stem_filter_size": 128,
        "num_stacks": 3,
        "num_modules_per_stack": 3,
        "batch_size": 256,
        "train_epochs": 108,
        "train_seconds": 4.0 * 60 * 60,
        "learning_rate": 0.1,
        "lr_decay_method": "COSINE_BY_STEP",
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "max_attempts": 5,
        "intermediate_evaluations": ["0.5"],
        "num_repeats": 3,
        "use_tpu": True,
        "tpu_iterations_per_loop": 100,
        "tpu_num_shards": 2,
    }


def _visualize(self):
    """Creates a graphviz ``Digraph`` of the pruned cell."""
    try:
        import graphviz
    except ImportError as e:
        raise ImportError(
            "ModelSpec.visualize() needs the graphviz package: pip install graphviz"
        ) from e
    matrix = np.asarray(self.matrix)
    last = len(matrix) - 1
    g = graphviz.Digraph()
    for v in range(last + 1):
        g.node(str(v), "input" if v == 0 else "output" if v == last else self.ops[v])
    # Row by row, as the original draws them.
    for src, dst in zip(*np.nonzero(np.triu(matrix, 1))):
        g.edge(str(src), str(dst))
    return g


def _rebuild_spec(cls, original_matrix, original_ops, data_format, state):
    """Unpickles a ``ModelSpec``: made again by ``__new__`` (a subclass's
    ``__init__`` is not called, as in the original's unpickling), then its
    attributes as pickled."""
    spec = cls.__new__(cls, original_matrix, original_ops, data_format)
    for name, value in state.items():
        setattr(spec, name, value)
    return spec


def _same_attribute(a, b):
    if a is None or b is None:
        return a is b
    return type(a) is type(b) and np.array_equal(a, b)


def _reduce_spec(self):
    """Pickles a ``ModelSpec`` as the original's pickle: every attribute, the
    assigned ones included (those the spec's own pruning gives are made
    again, so an unpickled spec keeps the fast query path)."""
    state = dict(getattr(self, "__dict__", {}))
    built = _core.ModelSpec(self.original_matrix, self.original_ops)
    for name in ("matrix", "ops", "valid_spec"):
        if not _same_attribute(getattr(self, name), getattr(built, name)):
            state[name] = getattr(self, name)
    return (_rebuild_spec, (type(self), self.original_matrix, self.original_ops, self.data_format, state))


# The native class itself (its docstring is help(ModelSpec)), not a Python
# subclass: a subclass instance costs a third of a query() call. Subclass
# it as the original's.
ModelSpec = _core.ModelSpec
ModelSpec.visualize = _visualize
ModelSpec.__reduce__ = _reduce_spec


class _Statistics(collections.abc.Mapping):
    """A read-only mapping hash -> stats, built per lookup from the index."""

    def __init__(self, nasbench, part):
        self._nb = nasbench
        self._part = part

    def __getitem__(self, module_hash):
        cell = self._nb._ds.cell_of_hash_str(module_hash)
        return self._nb._ds.metrics(cell)[self._part]

    def __contains__(self, module_hash):
        return self._nb._ds.contains_hash(module_hash)

    def __iter__(self):
        return iter(self._nb._hashes())

    def __len__(self):
        return len(self._nb._ds)

    def __repr__(self):
        name = "fixed_statistics" if self._part == 0 else "computed_statistics"
        return "<%s of %d cells (read-only)>" % (name, len(self))


class NASBench(_core.NASBenchBase):
    """User-facing API for accessing the NASBench dataset.

    Args:
      dataset_file: a release ``.tfrecord`` file (``nasbench_full`` or
        ``nasbench_only108``), a database written by ``nasbench ingest``, or
        its Parquet folder.
      seed: random seed used for sampling queried models; passed to
        ``random.seed`` (Python's global generator), as the original does.

    Raises:
      FileNotFoundError: the path does not exist.
      DatasetError: the file cannot be read (the message names the file,
        and for a damaged record its number and byte offset).

    Attributes: ``config`` (the original's defaults), ``valid_epochs`` (a
    set), ``fixed_statistics`` and ``computed_statistics`` (read-only
    mappings built lazily), ``training_time_spent``,
    ``total_epochs_spent``, ``history``.
    """

    def __init__(self, dataset_file, seed=None):
        self.config = _build_config()
        random.seed(seed)
        print("Loading dataset from file... This may take a few minutes...")
        start = time.time()
        self._ds = _core.Dataset(str(dataset_file))
        self.valid_epochs = set()
        for epochs in self._ds.budget_order:
            self.valid_epochs.add(epochs)
        self._hash_list = None
        self.fixed_statistics = _Statistics(self, 0)
        self.computed_statistics = _Statistics(self, 1)
        elapsed = time.time() - start
        print("Loaded dataset in %d seconds" % elapsed)
        self.history = {}
        self.training_time_spent = 0.0
        self.total_epochs_spent = 0

    def _hashes(self):
        if self._hash_list is None:
            self._hash_list = self._ds.hashes_in_file_order()
        return self._hash_list

    # query(model_spec, epochs=108, stop_halfway=False) is the base's
    # (native: no Python frame per call); see help(NASBench.query).

    def _batch(self, items, by_hash, epochs, stop_halfway):
        cols, error = self._ds.query_batch(
            items, by_hash, epochs, stop_halfway, self.valid_epochs
        )
        hashes, t, tr, va, te, params = cols
        self.training_time_spent += float(sum(t))
        self.total_epochs_spent += len(t) * (epochs // 2 if stop_halfway else epochs)
        if error is not None:
            raise error
        return {
            "module_hash": np.array(hashes, dtype=object),
            "trainable_parameters": np.array(params, dtype=np.int64),
            "training_time": np.array(t),
            "train_accuracy": np.array(tr),
            "validation_accuracy": np.array(va),
            "test_accuracy": np.array(te),
        }

    def query_batch(self, model_specs, epochs=108, stop_halfway=False):
        """``query`` for many specs at once: a dict of numpy arrays.

        The same draws and budget counters as calling ``query`` for each
        spec in order. Keys: module_hash, trainable_parameters,
        training_time, train_accuracy, validation_accuracy, test_accuracy.
        On an error the answers before it are counted, then it is raised.
        """
        return self._batch(model_specs, False, epochs, stop_halfway)

    def query_hashes(self, module_hashes, epochs=108, stop_halfway=False):
        """``query_batch`` by module hash (the values of ``hash_iterator``)."""
        return self._batch(module_hashes, True, epochs, stop_halfway)

    def is_valid(self, model_spec):
        """True if the model spec is within the search space (no budget)."""
        return self._ds.is_valid(model_spec)

    def get_budget_counters(self):
        """Returns the time and budget counters."""
        return self.training_time_spent, self.total_epochs_spent

    def reset_budget_counters(self):
        """Reset the time and epoch budget counters."""
        self.training_time_spent = 0.0
        self.total_epochs_spent = 0

    def evaluate(self, model_spec, model_dir):
        """Training from Python is not wired in: use ``nasbench train``.

        Raises:
          NotImplementedError: always; ``nasbench train --matrix ... --ops
          ... --db DB`` trains any cell with the NAS-Bench-101 protocol (CPU
          or CUDA) and stores the run beside the dataset's.
        """
        raise NotImplementedError(
            "NASBench.evaluate is not available from Python; train a cell with "
            "the `nasbench train` command (CPU or CUDA), e.g. "
            "`nasbench train --matrix BITS --ops OPS --db nb.duckdb`"
        )

    def hash_iterator(self):
        """Returns an iterable over all unique model hashes, in file order."""
        return self.fixed_statistics.keys()

    def get_metrics_from_hash(self, module_hash):
        """Returns (fixed_stats, computed_stats) of a hash; no budget.

        Raises:
          KeyError: the hash is not in the dataset.
        """
        return self._ds.metrics(self._ds.cell_of_hash_str(module_hash))

    def get_metrics_from_spec(self, model_spec):
        """Returns (fixed_stats, computed_stats) of a spec; no budget.

        Raises:
          OutOfDomainError: the spec is outside the search space.
          KeyError: a valid spec that the dataset does not hold.
        """
        return self._ds.metrics(self._ds.cell_of_spec(model_spec))

    def _check_spec(self, model_spec):
        """Checks that the model spec is within the dataset."""
        if not self._ds.is_valid(model_spec):
            self._ds.cell_of_spec(model_spec)

    def _hash_spec(self, model_spec):
        """Returns the MD5 hash for a provided model_spec."""
        return model_spec.hash_spec(self.config["available_ops"])

    # Beyond the original.

    def models(self):
        """The cells as a pyarrow Table in file order: module_hash,
        num_vertices, adjacency (row-major bits), module_operations,
        trainable_parameters."""
        import pyarrow as pa

        h, n, adj, ops, params = self._ds.model_columns()
        return pa.table(
            {
                "module_hash": pa.array(h, pa.string()),
                "num_vertices": pa.array(n, pa.int8()),
                "adjacency": pa.array(adj, pa.string()),
                "module_operations": pa.array([o.split(",") for o in ops], pa.list_(pa.string())),
                "trainable_parameters": pa.array(
                    [None if p < 0 else p for p in params], pa.int64()
                ),
            }
        )

    def runs(self):
        """Every run as a pyarrow Table: module_hash, epochs, repeat
        (1-based, file order), then the halfway_* and final_* training time
        and accuracies (null where absent)."""
        import pyarrow as pa

        h, e, r, values = self._ds.run_columns()
        names = [
            "%s_%s" % (when, what)
            for when in ("halfway", "final")
            for what in ("training_time", "train_accuracy", "validation_accuracy", "test_accuracy")
        ]
        cols = {
            "module_hash": pa.array(h, pa.string()),
            "epochs": pa.array(e, pa.int32()),
            "repeat": pa.array(r, pa.int8()),
        }
        for name, v in zip(names, values):
            v = np.asarray(v)
            cols[name] = pa.array(v, mask=np.isnan(v))
        return pa.table(cols)

    def sql(self):
        """A ``duckdb`` connection with the dataset (``models`` and
        ``runs``; a database's own tables when opened from one) and the
        functions ``nasbench_hash(matrix, ops)``, ``nasbench_is_valid(matrix,
        ops)`` and ``prune_matrix(matrix, ops)`` / ``prune_ops(matrix, ops)``.
        Needs the ``duckdb`` and ``pyarrow`` packages."""
        import duckdb
        import os

        path = self._ds.path
        if os.path.isfile(path) and _core.is_duckdb_file(path):
            con = duckdb.connect(path, read_only=True)
        else:
            con = duckdb.connect()
            models = self.models()
            runs = self.runs()
            con.register("models", models)
            con.register("runs", runs)
        _register_functions(con)
        return con


def _register_functions(con):
    """The nasbench SQL functions as duckdb Python functions."""
    def pruned(matrix, ops, part):
        p = _core.cell_prune(matrix, ops)
        return None if p is None else p[part]

    con.create_function("nasbench_hash", _core.cell_hash, ["INTEGER[][]", "VARCHAR[]"], "VARCHAR")
    con.create_function("nasbench_is_valid", _core.cell_is_valid, ["INTEGER[][]", "VARCHAR[]"], "BOOLEAN")
    con.create_function(
        "prune_matrix", lambda m, o: pruned(m, o, 0), ["INTEGER[][]", "VARCHAR[]"], "INTEGER[][]"
    )
    con.create_function("prune_ops", lambda m, o: pruned(m, o, 1), ["INTEGER[][]", "VARCHAR[]"], "VARCHAR[]")

