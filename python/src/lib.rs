//! The native half of the `nasbench` Python package (`nasbench._core`): the module, its exceptions and the cell functions; `spec` holds `ModelSpec`, `dataset` the open dataset and `NASBench`'s base with the original API's hot paths (spec checks, lookup, the draw from Python's `random`, the result dict).
//!
//! Every entry point returns a Python exception on failure; nothing here
//! panics on user input, and PyO3 turns any panic into a `PanicException`
//! instead of unwinding into the interpreter.

use std::path::PathBuf;

use nasbench::api::{self, ApiError};
use nasbench::cell::spec::{Domain, ModelSpec};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;

mod dataset;
mod spec;

use dataset::{Dataset, NASBenchBase};
use spec::{PySpec, read_matrix, read_ops};

create_exception!(
    _core,
    OutOfDomainError,
    PyException,
    "Indicates that the requested graph is outside of the search domain."
);
create_exception!(
    _core,
    DatasetError,
    PyException,
    "A dataset file (release TFRecord, database, Parquet folder or query index) cannot be read; the message names the file and, for a record, its number and byte offset."
);

/// The exception a core error becomes.
fn py_err(e: ApiError) -> PyErr {
    match e {
        ApiError::OutOfDomain(d) => OutOfDomainError::new_err(d.to_string()),
        ApiError::UnknownHash(h) => PyKeyError::new_err(h.to_hex()),
        ApiError::Spec(s) => PyValueError::new_err(s.to_string()),
        other => DatasetError::new_err(other.to_string()),
    }
}

/// The dataset hash of a cell given as matrix and ops (the SQL function
/// `nasbench_hash`): prunes, then hashes with the dataset's op labels.
#[pyfunction]
fn cell_hash(matrix: &Bound<'_, PyAny>, ops: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    let rows = read_matrix(matrix)?
        .ok_or_else(|| PyTypeError::new_err("matrix is not a matrix of ints"))?;
    let spec =
        ModelSpec::new(&rows, read_ops(ops)?).map_err(|e| PyValueError::new_err(e.to_string()))?;
    match spec.hash() {
        Ok(h) => Ok(Some(h.to_hex())),
        Err(_) => Ok(None),
    }
}

/// The pruned cell (matrix, ops), or None when input does not reach output.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn cell_prune(
    matrix: &Bound<'_, PyAny>,
    ops: &Bound<'_, PyAny>,
) -> PyResult<Option<(Vec<Vec<u8>>, Vec<String>)>> {
    let rows = read_matrix(matrix)?
        .ok_or_else(|| PyTypeError::new_err("matrix is not a matrix of ints"))?;
    let spec =
        ModelSpec::new(&rows, read_ops(ops)?).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(match (spec.matrix(), spec.ops()) {
        (Some(m), Some(o)) => Some((m.to_nested(), o.to_vec())),
        _ => None,
    })
}

/// Whether a cell passes the dataset's domain checks (`nasbench_is_valid`).
#[pyfunction]
fn cell_is_valid(matrix: &Bound<'_, PyAny>, ops: &Bound<'_, PyAny>) -> PyResult<bool> {
    let Some(rows) = read_matrix(matrix)? else {
        return Ok(false);
    };
    let Ok(ops) = read_ops(ops) else {
        return Ok(false);
    };
    Ok(ModelSpec::new(&rows, ops).is_ok_and(|s| s.is_valid(&Domain::default())))
}

/// Whether `path` is a DuckDB database file.
#[pyfunction]
fn is_duckdb_file(path: PathBuf) -> bool {
    api::is_duckdb_file(&path)
}

/// Python's repr of a set of ints added in `insertion` order.
#[pyfunction]
fn python_set_order(insertion: Vec<u32>) -> Vec<u32> {
    api::python_set_order(&insertion)
}

/// The native module.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySpec>()?;
    m.add_class::<Dataset>()?;
    m.add_class::<NASBenchBase>()?;
    m.add("OutOfDomainError", m.py().get_type::<OutOfDomainError>())?;
    m.add("DatasetError", m.py().get_type::<DatasetError>())?;
    m.add_function(wrap_pyfunction!(cell_hash, m)?)?;
    m.add_function(wrap_pyfunction!(cell_prune, m)?)?;
    m.add_function(wrap_pyfunction!(cell_is_valid, m)?)?;
    m.add_function(wrap_pyfunction!(python_set_order, m)?)?;
    m.add_function(wrap_pyfunction!(is_duckdb_file, m)?)?;
    Ok(())
}
