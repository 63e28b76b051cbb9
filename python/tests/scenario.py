"""One sequence of calls, run against any `nasbench.api` module (the
original's in a subprocess, ours in the test process): every result or
exception recorded, so that the two runs compare value for value."""

import random


def outcome(fn):
    try:
        return ("ok", fn())
    except Exception as e:  # noqa: BLE001 - the type and message are compared
        return ("err", type(e).__name__, str(e))


def run(api, path, seed, calls):
    nb = api.NASBench(path, seed=seed)
    out = [("valid_epochs", sorted(nb.valid_epochs), list(nb.valid_epochs))]
    for call in calls:
        kind = call[0]
        if kind == "query":
            _, matrix, ops, epochs, halfway = call
            out.append(outcome(lambda: nb.query(api.ModelSpec(matrix, ops), epochs, halfway)))
            out.append(("counters", nb.get_budget_counters()))
        elif kind == "query_kw":
            # Keywords, a numpy matrix or not, any truthy or falsy halfway.
            _, matrix, ops, epochs, halfway, as_array = call
            if as_array:
                import numpy as np
                matrix = np.array(matrix)
            out.append(outcome(lambda: nb.query(
                model_spec=api.ModelSpec(matrix=matrix, ops=ops), epochs=epochs, stop_halfway=halfway)))
            out.append(("counters", nb.get_budget_counters()))
        elif kind == "patched_randint":
            # The user's own random.randint (here: always the last repeat).
            _, matrix, ops, epochs = call
            saved = random.randint
            random.randint = lambda a, b: b
            try:
                out.append(outcome(lambda: nb.query(api.ModelSpec(matrix, ops), epochs)))
            finally:
                random.randint = saved
            out.append(("counters", nb.get_budget_counters()))
        elif kind == "user_draws":
            out.append(("draws", [random.random() for _ in range(call[1])]))
        elif kind == "reseed":
            random.seed(call[1])
        elif kind == "reset":
            nb.reset_budget_counters()
            out.append(("counters", nb.get_budget_counters()))
        elif kind == "is_valid":
            out.append(outcome(lambda: nb.is_valid(api.ModelSpec(call[1], call[2]))))
        elif kind == "spec":
            s = outcome(lambda: api.ModelSpec(call[1], call[2]))
            if s[0] == "ok":
                spec = s[1]
                s = ("ok", spec.original_matrix, spec.original_ops, spec.matrix, spec.ops,
                     spec.valid_spec, spec.data_format)
            out.append(s)
        elif kind == "metrics_spec":
            out.append(outcome(lambda: nb.get_metrics_from_spec(api.ModelSpec(call[1], call[2]))))
        elif kind == "metrics_hash":
            out.append(outcome(lambda: nb.get_metrics_from_hash(call[1])))
        elif kind == "fixed":
            out.append(outcome(lambda: nb.fixed_statistics[call[1]]))
        elif kind == "computed":
            out.append(outcome(lambda: nb.computed_statistics[call[1]]))
        elif kind == "hash_spec":
            out.append(outcome(lambda: api.ModelSpec(call[1], call[2]).hash_spec(nb.config["available_ops"])))
        else:
            raise ValueError(kind)
    out.append(("hashes", list(nb.hash_iterator())))
    out.append(("stat_keys", list(nb.fixed_statistics.keys()), list(nb.computed_statistics.keys())))
    out.append(("config", nb.config))
    out.append(("counters", nb.get_budget_counters()))
    return out
