"""nasbench: NAS-Bench-101 without TensorFlow.

``from nasbench import api`` gives the original release's API
(``api.NASBench``, ``api.ModelSpec``, ``api.OutOfDomainError``) over the
release ``.tfrecord`` files, a database written by ``nasbench ingest`` or
its Parquet folder, answered from a memory-mapped index built by Rust.
"""

from nasbench import api

__all__ = ["api"]
__version__ = "0.1.0"
