"""Type stubs of nasbench.api: the original NAS-Bench-101 API without TensorFlow."""

import collections.abc
from typing import Any, Dict, Iterable, KeysView, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np

INPUT: str
OUTPUT: str
CONV1X1: str
CONV3X3: str
MAXPOOL3X3: str

class OutOfDomainError(Exception):
    """The requested graph or budget is outside of the search domain."""

class DatasetError(Exception):
    """A dataset file cannot be read; the message names the file (and record)."""

_Matrix = Union[np.ndarray, Sequence[Sequence[int]]]
FixedStats = Dict[str, Any]
RunStats = Dict[str, float]
ComputedStats = Dict[int, List[RunStats]]

class ModelSpec:
    """Model specification given adjacency matrix and labeling."""
    original_matrix: np.ndarray
    original_ops: List[str]
    matrix: Optional[np.ndarray]
    ops: Optional[List[str]]
    valid_spec: bool
    data_format: str
    def __init__(self, matrix: _Matrix, ops: Sequence[str], data_format: str = ...) -> None: ...
    def hash_spec(self, canonical_ops: List[str]) -> str: ...
    def visualize(self) -> Any: ...

class NASBench:
    """User-facing API for accessing the NASBench dataset."""
    config: Dict[str, Any]
    valid_epochs: Set[int]
    fixed_statistics: Mapping[str, FixedStats]
    computed_statistics: Mapping[str, ComputedStats]
    history: Dict[Any, Any]
    training_time_spent: float
    total_epochs_spent: int
    def __init__(self, dataset_file: str, seed: Optional[int] = ...) -> None: ...
    def query(self, model_spec: ModelSpec, epochs: int = ..., stop_halfway: bool = ...) -> Dict[str, Any]: ...
    def query_batch(self, model_specs: Iterable[ModelSpec], epochs: int = ..., stop_halfway: bool = ...) -> Dict[str, np.ndarray]: ...
    def query_hashes(self, module_hashes: Iterable[str], epochs: int = ..., stop_halfway: bool = ...) -> Dict[str, np.ndarray]: ...
    def is_valid(self, model_spec: ModelSpec) -> bool: ...
    def get_budget_counters(self) -> Tuple[float, int]: ...
    def reset_budget_counters(self) -> None: ...
    def evaluate(self, model_spec: ModelSpec, model_dir: str) -> Dict[str, Any]: ...
    def hash_iterator(self) -> KeysView[str]: ...
    def get_metrics_from_hash(self, module_hash: str) -> Tuple[FixedStats, ComputedStats]: ...
    def get_metrics_from_spec(self, model_spec: ModelSpec) -> Tuple[FixedStats, ComputedStats]: ...
    def models(self) -> Any:
        """pyarrow.Table of the cells."""
    def runs(self) -> Any:
        """pyarrow.Table of every run."""
    def sql(self) -> Any:
        """duckdb.DuckDBPyConnection with the dataset and the nasbench functions."""
