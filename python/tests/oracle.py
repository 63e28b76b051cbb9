"""Runs a scenario against the original API (tests/reference) and pickles
the outcome: python oracle.py FILE SEED CALLS.pickle OUT.pickle"""

import os
import pickle
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(here, "reference", "tf_shim"),
                os.path.join(here, "reference", "nasbench-seed"), here]

from nasbench import api  # noqa: E402  (the original)
import scenario  # noqa: E402

path, seed, calls, out = sys.argv[1:5]
assert "reference" in api.__file__, api.__file__
with open(calls, "rb") as f:
    calls = pickle.load(f)
result = scenario.run(api, path, None if seed == "None" else int(seed), calls)
with open(out, "wb") as f:
    pickle.dump(result, f)
