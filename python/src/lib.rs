//! The native half of the `nasbench` Python package: the memory-mapped query index and the cell spec, with the original API's hot paths (spec checks, lookup, the draw from Python's `random`, the result dict).
//!
//! Every entry point returns a Python exception on failure; nothing here
//! panics on user input, and PyO3 turns any panic into a `PanicException`
//! instead of unwinding into the interpreter.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::OnceLock;

use nasbench::Matrix;
use nasbench::api::{self, ApiError, Index, NUM_REPEATS, RunMetrics};
use nasbench::cell::generate::{LabeledGraph, MAX_VERTICES, canonical_key};
use nasbench::cell::graph::{MAX_MATRIX_VERTICES, ModelHash, hash_module};
use nasbench::cell::ops::label_name;
use nasbench::cell::spec::{Domain, ModelSpec, OutOfDomain};
use pyo3::create_exception;
use pyo3::exceptions::{
    PyAttributeError, PyException, PyIndexError, PyKeyError, PyTypeError, PyValueError,
};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

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

/// Reads a matrix given as nested sequences (or anything with `tolist()`,
/// such as a numpy array) into rows of ints; `None` when it is not one.
fn read_matrix(m: &Bound<'_, PyAny>) -> PyResult<Option<Vec<Vec<i64>>>> {
    // Fast path: a list of lists of ints, as search code writes them.
    if let Ok(rows) = m.cast::<PyList>() {
        let mut out = Vec::with_capacity(rows.len());
        let mut fast = true;
        for row in rows.iter() {
            let Ok(row) = row.cast::<PyList>() else {
                fast = false;
                break;
            };
            let mut r = Vec::with_capacity(row.len());
            for v in row.iter() {
                match v.extract::<i64>() {
                    Ok(x) => r.push(x),
                    Err(_) => return Ok(None),
                }
            }
            out.push(r);
        }
        if fast {
            return Ok(Some(out));
        }
    }
    let list;
    let m = if m.hasattr(intern!(m.py(), "tolist"))? {
        list = m.call_method0(intern!(m.py(), "tolist"))?;
        &list
    } else {
        m
    };
    let Ok(rows) = m.try_iter() else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for row in rows {
        let row = row?;
        if row.is_instance_of::<PyString>() {
            return Ok(None);
        }
        let Ok(items) = row.try_iter() else {
            return Ok(None);
        };
        let mut r = Vec::new();
        for v in items {
            match v?.extract::<i64>() {
                Ok(x) => r.push(x),
                Err(_) => return Ok(None),
            }
        }
        out.push(r);
    }
    Ok(Some(out))
}

/// A list of `n` lists of `n` items that are all the int objects 0 or 1
/// (CPython's small-int singletons, which is what search code writes), as
/// row bitmasks; `None` for anything else, which [`read_matrix`] reads.
fn binary_rows(m: &Bound<'_, PyAny>) -> Option<Vec<u64>> {
    let rows = m.cast::<PyList>().ok()?;
    let n = rows.len();
    if n > MAX_MATRIX_VERTICES {
        return None;
    }
    let py = m.py();
    let zero = 0i64.into_pyobject(py).ok()?;
    let one = 1i64.into_pyobject(py).ok()?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let row = rows.get_item(i).ok()?;
        let row = row.cast::<PyList>().ok()?;
        if row.len() != n {
            return None;
        }
        let mut bits = 0u64;
        for j in 0..n {
            let v = row.get_item(j).ok()?;
            if v.is(&one) {
                bits |= 1 << j;
            } else if !v.is(&zero) {
                return None;
            }
        }
        out.push(bits);
    }
    Some(out)
}

/// Reads op names.
fn read_ops(ops: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    ops.try_iter()
        .and_then(|it| it.map(|o| o?.extract::<String>()).collect())
        .map_err(|_| PyTypeError::new_err("ops must be a list of op names (str)"))
}

/// The op names a cell of the dataset can have, NUL-terminated for
/// CPython's comparison, with their hash labels (interior ops first).
fn op_labels() -> &'static [(CString, i8)] {
    static NAMES: OnceLock<Vec<(CString, i8)>> = OnceLock::new();
    NAMES.get_or_init(|| {
        [0i8, 1, 2, -1, -2]
            .into_iter()
            .filter_map(|l| Some((CString::new(label_name(i64::from(l))?).ok()?, l)))
            .collect()
    })
}

/// The hash labels of `n` op names given as a list of `str` that are all
/// op names of the dataset (`input`, the canonical ops, `output`), compared
/// in place without copying the strings out; `None` for anything else,
/// which [`read_ops`] reads.
fn op_labels_of(ops: &Bound<'_, PyAny>, n: usize) -> Option<[i8; MAX_VERTICES]> {
    let list = ops.cast_exact::<PyList>().ok()?;
    if n > MAX_VERTICES || list.len() != n {
        return None;
    }
    let mut labels = [0i8; MAX_VERTICES];
    for (v, op) in list.iter().enumerate() {
        if !op.is_exact_instance_of::<PyString>() {
            return None;
        }
        labels[v] = op_labels().iter().find_map(|(name, label)| {
            // SAFETY: `op` is a live `str` (checked above) and `name` is
            // NUL-terminated; the comparison raises no exception.
            let cmp =
                unsafe { pyo3::ffi::PyUnicode_CompareWithASCIIString(op.as_ptr(), name.as_ptr()) };
            (cmp == 0).then_some(*label)
        })?;
    }
    Some(labels)
}

/// A spec of at most seven vertices whose ops are all the dataset's, kept
/// inline (as given, and pruned) instead of as a [`ModelSpec`], which is
/// built only when an attribute is read.
struct Compact {
    original: LabeledGraph,
    /// `None` for an invalid spec.
    pruned: Option<LabeledGraph>,
}

impl Compact {
    /// The compact form of a square 0/1 matrix given as row bitmasks and
    /// its ops, when it has one (an upper-triangular matrix of at most
    /// seven vertices with the dataset's op names); `None` otherwise.
    fn of(masks: &[u64], ops: &Bound<'_, PyAny>) -> Option<Compact> {
        let n = masks.len();
        let labels = op_labels_of(ops, n)?;
        let mut original = LabeledGraph {
            n: n as u8,
            rows: [0; MAX_VERTICES],
            labels,
        };
        for (i, &row) in masks.iter().enumerate() {
            if row & ((2u64 << i) - 1) != 0 {
                return None;
            }
            original.rows[i] = u8::try_from(row).ok()?;
        }
        Some(Compact {
            pruned: original.pruned(),
            original,
        })
    }

    /// The spec as a [`ModelSpec`].
    fn spec(&self) -> PyResult<ModelSpec> {
        let ops = self
            .original
            .ops()
            .into_iter()
            .map(str::to_string)
            .collect();
        ModelSpec::from_matrix(self.original.matrix(), ops)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }
}

/// Model specification given adjacency matrix and labeling.
///
/// Args:
///   matrix: ndarray or nested list with shape [V, V] for the adjacency
///     matrix (upper triangular, 0/1).
///   ops: V-length list of op names; the first and last are the input and
///     output vertices.
///   data_format: 'channels_last' or 'channels_first'.
///
/// Raises:
///   ValueError: the matrix is not square, not upper triangular, or does
///     not match the ops' length.
///
/// Attributes (as the original's): ``original_matrix`` and
/// ``original_ops`` as given, ``matrix`` and ``ops`` pruned (vertices not
/// on a path from input to output removed; None when there is no such
/// path), ``valid_spec``, ``data_format``. Matrices are numpy arrays.
/// ``visualize()`` draws the pruned cell (needs ``graphviz``).
#[pyclass(module = "nasbench.api", name = "ModelSpec", subclass, dict, weakref)]
pub struct PySpec {
    /// The spec as built; `None` once `matrix`, `ops` or `valid_spec` was
    /// assigned (the attributes then hold the values).
    spec: Option<ModelSpec>,
    /// Instead of `spec`, the compact form of a spec built from one.
    compact: Option<Compact>,
    original_matrix: Option<Py<PyAny>>,
    original_ops: Option<Py<PyAny>>,
    matrix: Option<Py<PyAny>>,
    ops: Option<Py<PyAny>>,
    valid_spec: Option<bool>,
    data_format: Py<PyAny>,
    /// The numpy dtype of a matrix given as an array (the pruned matrix
    /// keeps it, as `np.delete` does).
    dtype: Option<Py<PyAny>>,
}

fn numpy(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import("numpy")
}

fn nested<'py>(py: Python<'py>, m: &nasbench::Matrix) -> PyResult<Bound<'py, PyList>> {
    PyList::new(
        py,
        m.to_nested()
            .iter()
            .map(|r| r.iter().map(|&v| i64::from(v)).collect::<Vec<_>>()),
    )
}

/// `data_format` as given, or the original's default `'channels_last'`.
fn data_format_or_default(py: Python<'_>, data_format: Option<Py<PyAny>>) -> Py<PyAny> {
    data_format.unwrap_or_else(|| intern!(py, "channels_last").clone().into_any().unbind())
}

impl PySpec {
    /// A new spec object for a built spec.
    fn built(
        py: Python<'_>,
        spec: ModelSpec,
        original_matrix: Option<Py<PyAny>>,
        dtype: Option<Py<PyAny>>,
        data_format: Option<Py<PyAny>>,
    ) -> Self {
        PySpec {
            valid_spec: Some(spec.valid_spec()),
            spec: Some(spec),
            compact: None,
            original_matrix,
            original_ops: None,
            matrix: None,
            ops: None,
            data_format: data_format_or_default(py, data_format),
            dtype,
        }
    }

    /// A new spec object for a spec in compact form.
    fn from_compact(py: Python<'_>, compact: Compact, data_format: Option<Py<PyAny>>) -> Self {
        PySpec {
            valid_spec: Some(compact.pruned.is_some()),
            spec: None,
            compact: Some(compact),
            original_matrix: None,
            original_ops: None,
            matrix: None,
            ops: None,
            data_format: data_format_or_default(py, data_format),
            dtype: None,
        }
    }

    /// The spec as built (from its compact form when it has one); `None`
    /// after an attribute was assigned.
    fn built_spec(&self) -> PyResult<Option<Cow<'_, ModelSpec>>> {
        if let Some(s) = &self.spec {
            return Ok(Some(Cow::Borrowed(s)));
        }
        match &self.compact {
            Some(c) => Ok(Some(Cow::Owned(c.spec()?))),
            None => Ok(None),
        }
    }

    /// Before an assignment to `matrix`, `ops` or `valid_spec`: the
    /// attributes not read yet take their values from the built spec,
    /// which is then dropped, so that from now on the attributes (as in
    /// the original, plain attributes) are what a query reads.
    fn detach(slf: &Bound<'_, Self>) -> PyResult<()> {
        {
            let me = slf.borrow();
            if me.spec.is_none() && me.compact.is_none() {
                return Ok(());
            }
        }
        PySpec::original_matrix(slf)?;
        PySpec::original_ops(slf)?;
        PySpec::matrix(slf)?;
        PySpec::ops(slf)?;
        let mut me = slf.borrow_mut();
        me.spec = None;
        me.compact = None;
        Ok(())
    }

    /// The spec the attributes describe now.
    fn current(slf: &Bound<'_, Self>) -> PyResult<Option<ModelSpec>> {
        if let Some(s) = slf.borrow().built_spec()? {
            return Ok(Some(s.into_owned()));
        }
        spec_from_attributes(slf.as_any())
    }
}

/// A spec from any object with the original's attributes (`valid_spec`,
/// `matrix`, `ops`): `None` for an invalid one.
fn spec_from_attributes(obj: &Bound<'_, PyAny>) -> PyResult<Option<ModelSpec>> {
    if !obj.getattr("valid_spec")?.is_truthy()? {
        return Ok(None);
    }
    let matrix = obj.getattr("matrix")?;
    let rows = read_matrix(&matrix)?
        .ok_or_else(|| PyTypeError::new_err("model_spec.matrix is not a matrix of ints"))?;
    let ops = read_ops(&obj.getattr("ops")?)?;
    ModelSpec::new(&rows, ops)
        .map(Some)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

#[pymethods]
impl PySpec {
    #[new]
    #[pyo3(
        signature = (matrix, ops, data_format = None),
        text_signature = "(matrix, ops, data_format='channels_last')"
    )]
    fn new(
        py: Python<'_>,
        matrix: &Bound<'_, PyAny>,
        ops: &Bound<'_, PyAny>,
        data_format: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        // An empty list is a 1-d array to numpy, so not square.
        if (matrix.is_exact_instance_of::<PyList>() || matrix.is_exact_instance_of::<PyTuple>())
            && matrix.len()? == 0
        {
            return Err(PyValueError::new_err("matrix must be square"));
        }
        if let Some(masks) = binary_rows(matrix) {
            if let Some(compact) = Compact::of(&masks, ops) {
                return Ok(PySpec::from_compact(py, compact, data_format));
            }
            // The checks of `ModelSpec::new` that remain for a square 0/1
            // matrix, in its order (ops length, then upper triangular).
            let op_names = read_ops(ops)?;
            let m = Matrix::from_row_masks(&masks)
                .ok_or_else(|| PyValueError::new_err("matrix must be square"))?;
            let spec = ModelSpec::from_matrix(m, op_names)
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            return Ok(PySpec::built(py, spec, None, None, data_format));
        }
        let np_array = !matrix.is_instance_of::<PyList>()
            && matrix.hasattr(intern!(py, "dtype"))?
            && matrix.hasattr(intern!(py, "shape"))?;
        let rows = match read_matrix(matrix)? {
            Some(r) => r,
            None => {
                // What np.array makes of it decides, as in the original.
                let arr = numpy(py)?.call_method1("array", (matrix,))?;
                read_matrix(&arr)?.ok_or_else(|| PyValueError::new_err("matrix must be square"))?
            }
        };
        let op_names = read_ops(ops)?;
        let spec =
            ModelSpec::new(&rows, op_names).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let (original_matrix, dtype) = if np_array {
            let copy = matrix.call_method0("copy")?;
            let dtype = copy.getattr("dtype")?.unbind();
            (Some(copy.unbind()), Some(dtype))
        } else {
            (None, None)
        };
        Ok(PySpec::built(py, spec, original_matrix, dtype, data_format))
    }

    /// The matrix as given (a numpy array).
    #[getter]
    fn original_matrix(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(m) = &slf.borrow().original_matrix {
            return Ok(m.clone_ref(py));
        }
        let m = {
            let me = slf.borrow();
            let spec = me
                .built_spec()?
                .ok_or_else(|| PyTypeError::new_err("no matrix"))?;
            numpy(py)?
                .call_method1("array", (nested(py, spec.original_matrix())?,))?
                .unbind()
        };
        slf.borrow_mut().original_matrix = Some(m.clone_ref(py));
        Ok(m)
    }

    #[setter]
    fn set_original_matrix(&mut self, value: Py<PyAny>) {
        self.original_matrix = Some(value);
    }

    /// The ops as given (a list of str).
    #[getter]
    fn original_ops(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(o) = &slf.borrow().original_ops {
            return Ok(o.clone_ref(py));
        }
        let o = {
            let me = slf.borrow();
            let spec = me
                .built_spec()?
                .ok_or_else(|| PyTypeError::new_err("no ops"))?;
            PyList::new(py, spec.original_ops())?.into_any().unbind()
        };
        slf.borrow_mut().original_ops = Some(o.clone_ref(py));
        Ok(o)
    }

    #[setter]
    fn set_original_ops(&mut self, value: Py<PyAny>) {
        self.original_ops = Some(value);
    }

    /// The pruned matrix (a numpy array), or None for an invalid spec.
    #[getter]
    fn matrix(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(m) = &slf.borrow().matrix {
            return Ok(m.clone_ref(py));
        }
        let m = {
            let me = slf.borrow();
            let spec = me.built_spec()?;
            match spec.as_deref().and_then(ModelSpec::matrix) {
                None => py.None(),
                Some(pm) => {
                    let kw = PyDict::new(py);
                    if let Some(d) = &me.dtype {
                        kw.set_item("dtype", d.clone_ref(py))?;
                    }
                    numpy(py)?
                        .getattr("array")?
                        .call((nested(py, pm)?,), Some(&kw))?
                        .unbind()
                }
            }
        };
        slf.borrow_mut().matrix = Some(m.clone_ref(py));
        Ok(m)
    }

    #[setter]
    fn set_matrix(slf: &Bound<'_, Self>, value: Py<PyAny>) -> PyResult<()> {
        PySpec::detach(slf)?;
        slf.borrow_mut().matrix = Some(value);
        Ok(())
    }

    /// The pruned ops (a list of str), or None for an invalid spec.
    #[getter]
    fn ops(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(o) = &slf.borrow().ops {
            return Ok(o.clone_ref(py));
        }
        let o = {
            let me = slf.borrow();
            let spec = me.built_spec()?;
            match spec.as_deref().and_then(ModelSpec::ops) {
                None => py.None(),
                Some(ops) => PyList::new(py, ops)?.into_any().unbind(),
            }
        };
        slf.borrow_mut().ops = Some(o.clone_ref(py));
        Ok(o)
    }

    #[setter]
    fn set_ops(slf: &Bound<'_, Self>, value: Py<PyAny>) -> PyResult<()> {
        PySpec::detach(slf)?;
        slf.borrow_mut().ops = Some(value);
        Ok(())
    }

    /// Whether input reaches output after pruning.
    #[getter]
    fn valid_spec(&self) -> bool {
        self.valid_spec.unwrap_or(false)
    }

    #[setter]
    fn set_valid_spec(slf: &Bound<'_, Self>, value: bool) -> PyResult<()> {
        PySpec::detach(slf)?;
        slf.borrow_mut().valid_spec = Some(value);
        Ok(())
    }

    /// 'channels_last' or 'channels_first'.
    #[getter]
    fn data_format(&self, py: Python<'_>) -> Py<PyAny> {
        self.data_format.clone_ref(py)
    }

    #[setter]
    fn set_data_format(&mut self, value: Py<PyAny>) {
        self.data_format = value;
    }

    /// Computes the isomorphism-invariant graph hash of this spec.
    ///
    /// Args:
    ///   canonical_ops: list of operations in the canonical ordering which
    ///     they were assigned (``config['available_ops']``).
    ///
    /// Returns:
    ///   MD5 hash of this spec which can be used to query the dataset.
    fn hash_spec(slf: &Bound<'_, Self>, canonical_ops: &Bound<'_, PyAny>) -> PyResult<String> {
        let ops = slf.getattr("ops")?;
        if ops.is_none() {
            return Err(PyTypeError::new_err(
                "'NoneType' object is not subscriptable",
            ));
        }
        let spec = PySpec::current(slf)?
            .ok_or_else(|| PyTypeError::new_err("'NoneType' object is not subscriptable"))?;
        let canon = canonical_ops
            .cast::<PyList>()
            .map_err(|_| PyTypeError::new_err("canonical_ops must be a list"))?;
        let names = spec.ops().unwrap_or_default();
        let mut labels = vec![-1i64];
        for op in &names[1..names.len().saturating_sub(1).max(1)] {
            let i: usize = canon.call_method1("index", (op,))?.extract()?;
            labels.push(i as i64);
        }
        labels.push(-2);
        let matrix = spec
            .matrix()
            .ok_or_else(|| PyTypeError::new_err("'NoneType' object is not subscriptable"))?;
        Ok(hash_module(matrix, &labels).to_hex())
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let m = slf.getattr("matrix")?.repr()?.to_string();
        let o = slf.getattr("ops")?.repr()?.to_string();
        Ok(format!("ModelSpec(matrix={m}, ops={o})"))
    }
}

/// The cells as columns: hash, vertices, adjacency bits, ops, parameters.
type ModelColumns = (Vec<String>, Vec<u8>, Vec<String>, Vec<String>, Vec<i64>);

/// The open dataset: a memory-mapped query index.
#[pyclass(module = "nasbench._core", name = "Dataset")]
pub struct Dataset {
    ix: Index,
    domain: Domain,
    /// `module_adjacency` arrays by cell, copied for every answer.
    adjacency: HashMap<u32, Py<PyAny>>,
    random: Py<PyModule>,
    /// The standard library's `random.randint` and the `getrandbits` of
    /// the generator it draws from, when its draw can be made directly.
    randbits: Option<(Py<PyAny>, Py<PyAny>)>,
    /// The op names as Python strings, made once (`module_operations`).
    op_names: Vec<(&'static str, Py<PyString>)>,
    int8: Py<PyAny>,
    path: PathBuf,
}

/// Arrays kept for `module_adjacency` before the cache starts over.
const ADJACENCY_CACHE: usize = 1 << 16;

fn value(v: Option<f64>) -> f64 {
    // The original reads proto2 defaults where a value is absent.
    v.unwrap_or(0.0)
}

impl Dataset {
    fn adjacency<'py>(&mut self, py: Python<'py>, cell: usize) -> PyResult<Bound<'py, PyAny>> {
        if let Some(a) = self.adjacency.get(&(cell as u32)) {
            return a.bind(py).call_method0(intern!(py, "copy"));
        }
        let fixed = self.ix.fixed(cell);
        let arr = numpy(py)?
            .getattr("array")?
            .call1((nested(py, &fixed.module_adjacency())?, self.int8.bind(py)))?;
        if self.adjacency.len() >= ADJACENCY_CACHE {
            self.adjacency.clear();
        }
        self.adjacency.insert(cell as u32, arr.clone().unbind());
        arr.call_method0(intern!(py, "copy"))
    }

    fn fixed_dict<'py>(&mut self, py: Python<'py>, cell: usize) -> PyResult<Bound<'py, PyDict>> {
        let fixed = self.ix.fixed(cell);
        let d = PyDict::new(py);
        d.set_item(intern!(py, "module_adjacency"), self.adjacency(py, cell)?)?;
        let names = fixed
            .module_operations()
            .into_iter()
            .map(|name| self.op_name(py, name))
            .collect::<PyResult<Vec<_>>>()?;
        d.set_item(intern!(py, "module_operations"), PyList::new(py, names)?)?;
        d.set_item(
            intern!(py, "trainable_parameters"),
            fixed.trainable_parameters.unwrap_or(0),
        )?;
        Ok(d)
    }

    /// The Python string of an op name, made once per name.
    fn op_name<'py>(
        &mut self,
        py: Python<'py>,
        name: &'static str,
    ) -> PyResult<Bound<'py, PyString>> {
        if let Some((_, s)) = self.op_names.iter().find(|(n, _)| *n == name) {
            return Ok(s.bind(py).clone());
        }
        let s = PyString::new(py, name);
        self.op_names.push((name, s.clone().unbind()));
        Ok(s)
    }

    /// The cell of a spec object (ours or any with the original's
    /// attributes), after the original's domain checks.
    fn cell_of(&self, spec: &Bound<'_, PyAny>) -> PyResult<usize> {
        let ours = spec.cast::<PySpec>().ok();
        if let Some(ours) = &ours {
            let me = ours.borrow();
            if let Some(c) = &me.compact {
                return self.lookup_compact(c);
            }
            if let Some(s) = &me.spec {
                return self.lookup(s);
            }
        }
        let s = match &ours {
            Some(ours) => PySpec::current(ours)?,
            None => spec_from_attributes(spec)?,
        };
        match s {
            Some(s) => self.lookup(&s),
            None => Err(OutOfDomainError::new_err(
                OutOfDomain::Disconnected.to_string(),
            )),
        }
    }

    /// [`Dataset::lookup`] of a compact spec: the checks and the key
    /// lookup on the inline graph; the spec's hash only when the key is
    /// not found (for the KeyError) or keys are not unique.
    fn lookup_compact(&self, c: &Compact) -> PyResult<usize> {
        let Some(pruned) = &c.pruned else {
            return Err(OutOfDomainError::new_err(
                OutOfDomain::Disconnected.to_string(),
            ));
        };
        pruned
            .check(&self.domain)
            .map_err(|e| OutOfDomainError::new_err(e.to_string()))?;
        if self.ix.keys_unique()
            && let Some(cell) = self.ix.find_key(canonical_key(pruned)).map_err(py_err)?
        {
            return Ok(cell);
        }
        self.lookup(&c.spec()?)
    }

    /// The original's domain checks, then the cell.
    fn lookup(&self, s: &ModelSpec) -> PyResult<usize> {
        s.check(&self.domain)
            .map_err(|e| OutOfDomainError::new_err(e.to_string()))?;
        api::find_spec(&self.ix, s).map_err(py_err)
    }

    /// `random.randint(0, 2)` on Python's global generator. While
    /// `random.randint` is the standard library's, bound to a plain
    /// `random.Random`, its own steps are made directly: `randrange(0, 3)`
    /// ends in `_randbelow_with_getrandbits(3)`, which draws
    /// `getrandbits(2)` until the value is below 3. The same draws and the
    /// same generator state, without two Python frames per call.
    fn draw(&self, py: Python<'_>) -> PyResult<usize> {
        let current = self.random.bind(py).getattr(intern!(py, "randint"))?;
        match &self.randbits {
            Some((randint, getrandbits)) if current.is(randint.bind(py)) => {
                let bits = (NUM_REPEATS as u64).next_power_of_two().trailing_zeros();
                let getrandbits = getrandbits.bind(py);
                loop {
                    let r: usize = getrandbits.call1((bits,))?.extract()?;
                    if r < NUM_REPEATS {
                        return Ok(r);
                    }
                }
            }
            _ => current.call1((0, NUM_REPEATS - 1))?.extract(),
        }
    }

    fn run(&self, cell: usize, epochs: u32, r: usize) -> PyResult<RunMetrics> {
        let b = self
            .ix
            .budget_index(epochs)
            .filter(|&b| self.ix.repeat_count(cell, b) > 0)
            .ok_or_else(|| PyKeyError::new_err(epochs))?;
        if r >= self.ix.repeat_count(cell, b) {
            return Err(PyIndexError::new_err("list index out of range"));
        }
        self.ix
            .run(cell, b, r)
            .map_err(py_err)?
            .ok_or_else(|| PyIndexError::new_err("list index out of range"))
    }

    /// The original's draw and lookup for one query: a repeat from
    /// Python's `random`, then its halfway or final point.
    fn sample(
        &self,
        py: Python<'_>,
        cell: usize,
        epochs: u32,
        stop_halfway: bool,
    ) -> PyResult<nasbench::api::Point> {
        let r = self.draw(py)?;
        let run = self.run(cell, epochs, r)?;
        Ok(if stop_halfway { run.halfway } else { run.last })
    }

    fn epochs_of(epochs: &Bound<'_, PyAny>) -> PyResult<u32> {
        if let Ok(e) = epochs.extract::<u32>() {
            return Ok(e);
        }
        let f: f64 = epochs.extract()?;
        if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) {
            Ok(f as u32)
        } else {
            Err(PyKeyError::new_err(epochs.clone().unbind()))
        }
    }

    /// One query: the budget check, then the spec's (the original's
    /// order), the draw, the answer dict.
    fn query_one<'py>(
        &mut self,
        py: Python<'py>,
        spec: &Bound<'py, PyAny>,
        epochs: &Bound<'py, PyAny>,
        stop_halfway: bool,
        valid_epochs: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyDict>, f64)> {
        check_epochs(epochs, valid_epochs)?;
        let cell = self.cell_of(spec)?;
        let p = self.sample(py, cell, Self::epochs_of(epochs)?, stop_halfway)?;
        let d = self.fixed_dict(py, cell)?;
        d.set_item(intern!(py, "training_time"), value(p.training_time))?;
        d.set_item(intern!(py, "train_accuracy"), value(p.train_accuracy))?;
        d.set_item(
            intern!(py, "validation_accuracy"),
            value(p.validation_accuracy),
        )?;
        d.set_item(intern!(py, "test_accuracy"), value(p.test_accuracy))?;
        Ok((d, value(p.training_time)))
    }

    fn cell_of_hash(&self, h: &Bound<'_, PyAny>) -> PyResult<usize> {
        let text: String = h
            .extract()
            .map_err(|_| PyKeyError::new_err(h.clone().unbind()))?;
        let hash: ModelHash = text
            .parse()
            .map_err(|_| PyKeyError::new_err(text.clone()))?;
        self.ix
            .find_hash(&hash)
            .map_err(py_err)?
            .ok_or_else(|| PyKeyError::new_err(text))
    }
}

/// `random.randint` and its generator's `getrandbits`, when `randint` is
/// the standard library's on a plain `random.Random` whose `_randbelow` is
/// `_randbelow_with_getrandbits` (so `randint(0, 2)` is `getrandbits(2)`
/// until below 3); `None` for anything else (a subclass, an override),
/// which is then called as it is.
fn direct_draw(random: &Bound<'_, PyModule>) -> PyResult<Option<(Py<PyAny>, Py<PyAny>)>> {
    let inst = random.getattr("_inst")?;
    let cls = random.getattr("Random")?;
    let randint = random.getattr("randint")?;
    let overridden = match inst.getattr("__dict__") {
        Ok(d) => d.contains("_randbelow")? || d.contains("getrandbits")?,
        Err(_) => false,
    };
    let stock = !overridden
        && inst.get_type().is(&cls)
        && cls
            .getattr("_randbelow")?
            .is(&cls.getattr("_randbelow_with_getrandbits")?)
        && randint.getattr("__self__")?.is(&inst)
        && randint.getattr("__func__")?.is(&cls.getattr("randint")?);
    if !stock {
        return Ok(None);
    }
    Ok(Some((
        randint.unbind(),
        inst.getattr("getrandbits")?.unbind(),
    )))
}

/// The original's budget check: `epochs` must be in `valid_epochs`.
fn check_epochs(epochs: &Bound<'_, PyAny>, valid_epochs: &Bound<'_, PyAny>) -> PyResult<()> {
    if valid_epochs.contains(epochs)? {
        return Ok(());
    }
    Err(OutOfDomainError::new_err(format!(
        "invalid number of epochs, must be one of {}",
        valid_epochs.str()?
    )))
}

fn run_dict<'py>(py: Python<'py>, run: &RunMetrics) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("halfway_training_time", value(run.halfway.training_time))?;
    d.set_item("halfway_train_accuracy", value(run.halfway.train_accuracy))?;
    d.set_item(
        "halfway_validation_accuracy",
        value(run.halfway.validation_accuracy),
    )?;
    d.set_item("halfway_test_accuracy", value(run.halfway.test_accuracy))?;
    d.set_item("final_training_time", value(run.last.training_time))?;
    d.set_item("final_train_accuracy", value(run.last.train_accuracy))?;
    d.set_item(
        "final_validation_accuracy",
        value(run.last.validation_accuracy),
    )?;
    d.set_item("final_test_accuracy", value(run.last.test_accuracy))?;
    Ok(d)
}

#[pymethods]
impl Dataset {
    /// Opens a release `.tfrecord` file, a database written by `nasbench
    /// ingest`, or its Parquet folder; builds the query index on the first
    /// open (calling `building(path)` with where it goes) and maps it after.
    #[new]
    #[pyo3(signature = (path, building = None))]
    fn new(py: Python<'_>, path: PathBuf, building: Option<Py<PyAny>>) -> PyResult<Self> {
        if !path.exists() {
            return Err(pyo3::exceptions::PyFileNotFoundError::new_err((
                2,
                "No such file or directory",
                path.display().to_string(),
            )));
        }
        let ix = py
            .detach(|| {
                api::open_index(&path, |p| {
                    if let Some(cb) = &building {
                        Python::attach(|py| {
                            let _ = cb.call1(py, (p.display().to_string(),));
                        });
                    }
                })
            })
            .map_err(py_err)?;
        let random = py.import("random")?;
        Ok(Dataset {
            ix,
            domain: Domain::default(),
            adjacency: HashMap::new(),
            randbits: direct_draw(&random).unwrap_or(None),
            op_names: Vec::new(),
            random: random.unbind(),
            int8: numpy(py)?.getattr("int8")?.unbind(),
            path,
        })
    }

    /// Number of cells.
    fn __len__(&self) -> usize {
        self.ix.len()
    }

    /// The budgets (epochs) in the order they first appear in the source.
    #[getter]
    fn budget_order(&self) -> Vec<u32> {
        self.ix.budget_order().to_vec()
    }

    /// Where the query index lies (None: built in memory only).
    #[getter]
    fn index_path(&self) -> Option<String> {
        self.ix.path.as_ref().map(|p| p.display().to_string())
    }

    /// Whether this open built the index (rather than mapping it).
    #[getter]
    fn built(&self) -> bool {
        self.ix.built
    }

    /// Why a built index could not be written (it works from memory).
    #[getter]
    fn write_error(&self) -> Option<String> {
        self.ix.write_error.clone()
    }

    /// The source path.
    #[getter]
    fn path(&self) -> String {
        self.path.display().to_string()
    }

    /// Many queries, one at a time in order (the same draws); stops at the
    /// first error, which it returns with the answers before it.
    /// `by_hash`: the items are hashes, not specs. Returns (answers as
    /// columns: cell, training time, train, validation, test accuracy,
    /// trainable parameters), and the error or None.
    fn query_batch<'py>(
        &mut self,
        py: Python<'py>,
        items: &Bound<'py, PyAny>,
        by_hash: bool,
        epochs: &Bound<'py, PyAny>,
        stop_halfway: bool,
        valid_epochs: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyTuple>, Option<PyErr>)> {
        let mut cells: Vec<u32> = Vec::new();
        let mut cols: [Vec<f64>; 4] = Default::default();
        let mut params: Vec<i64> = Vec::new();
        let mut error = None;
        let e = if valid_epochs.contains(epochs)? {
            Self::epochs_of(epochs).ok()
        } else {
            None
        };
        for item in items.try_iter()? {
            let item = item?;
            let outcome = (|| -> PyResult<()> {
                let Some(e) = e else {
                    return check_epochs(epochs, valid_epochs)
                        .and(Err(PyKeyError::new_err(epochs.clone().unbind())));
                };
                let cell = if by_hash {
                    self.cell_of_hash(&item)?
                } else {
                    self.cell_of(&item)?
                };
                let p = self.sample(py, cell, e, stop_halfway)?;
                cells.push(cell as u32);
                cols[0].push(value(p.training_time));
                cols[1].push(value(p.train_accuracy));
                cols[2].push(value(p.validation_accuracy));
                cols[3].push(value(p.test_accuracy));
                params.push(self.ix.fixed(cell).trainable_parameters.unwrap_or(0));
                Ok(())
            })();
            if let Err(err) = outcome {
                error = Some(err);
                break;
            }
        }
        let hashes: Vec<String> = cells
            .iter()
            .map(|&c| self.ix.hash(c as usize).to_hex())
            .collect();
        let [t, tr, va, te] = cols;
        let out = PyTuple::new(
            py,
            [
                hashes.into_pyobject(py)?.into_any(),
                t.into_pyobject(py)?.into_any(),
                tr.into_pyobject(py)?.into_any(),
                va.into_pyobject(py)?.into_any(),
                te.into_pyobject(py)?.into_any(),
                params.into_pyobject(py)?.into_any(),
            ],
        )?;
        Ok((out, error))
    }

    /// Whether a spec passes the original's domain checks.
    fn is_valid(&self, spec: &Bound<'_, PyAny>) -> PyResult<bool> {
        if let Ok(ours) = spec.cast::<PySpec>()
            && let Some(c) = &ours.borrow().compact
        {
            return Ok(c.pruned.is_some_and(|p| p.check(&self.domain).is_ok()));
        }
        let s = match spec.cast::<PySpec>() {
            Ok(ours) => PySpec::current(ours)?,
            Err(_) => spec_from_attributes(spec)?,
        };
        Ok(s.is_some_and(|s| s.is_valid(&self.domain)))
    }

    /// The cell number of a spec (after the domain checks), or a KeyError
    /// naming its hash.
    fn cell_of_spec(&self, spec: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.cell_of(spec)
    }

    /// The cell number of a hash, or a KeyError.
    fn cell_of_hash_str(&self, h: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.cell_of_hash(h)
    }

    /// Whether the hash is a cell of the dataset.
    fn contains_hash(&self, h: &Bound<'_, PyAny>) -> bool {
        self.cell_of_hash(h).is_ok()
    }

    /// The original's (fixed_stats, computed_stats) of a cell number.
    fn metrics<'py>(
        &mut self,
        py: Python<'py>,
        cell: usize,
    ) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>)> {
        if cell >= self.ix.len() {
            return Err(PyIndexError::new_err("cell number out of range"));
        }
        self.ix.verify_cell(cell).map_err(py_err)?;
        let fixed = self.fixed_dict(py, cell)?;
        let computed = PyDict::new(py);
        for &e in self.ix.budget_order() {
            let Some(b) = self.ix.budget_index(e) else {
                continue;
            };
            let n = self.ix.repeat_count(cell, b);
            if n == 0 {
                continue;
            }
            let runs = PyList::empty(py);
            for r in 0..n {
                let run = self.ix.run(cell, b, r).map_err(py_err)?.unwrap_or_default();
                runs.append(run_dict(py, &run)?)?;
            }
            computed.set_item(e, runs)?;
        }
        Ok((fixed, computed))
    }

    /// The hashes in the order they first appear in the source.
    fn hashes_in_file_order(&self) -> PyResult<Vec<String>> {
        let order = self.ix.file_order().map_err(py_err)?;
        Ok(order
            .iter()
            .map(|&c| self.ix.hash(c as usize).to_hex())
            .collect())
    }

    /// The cells as columns, in file order: hash, vertices, row-major
    /// adjacency bits, ops (comma-joined), trainable parameters (-1: unknown).
    fn model_columns(&self) -> PyResult<ModelColumns> {
        let order = self.ix.file_order().map_err(py_err)?;
        let mut out = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for &c in &order {
            let c = c as usize;
            self.ix.verify_cell(c).map_err(py_err)?;
            let f = self.ix.fixed(c);
            out.0.push(f.hash.to_hex());
            out.1.push(f.graph.n);
            out.2.push(f.module_adjacency().to_bit_string());
            out.3.push(f.module_operations().join(","));
            out.4.push(f.trainable_parameters.unwrap_or(-1));
        }
        Ok(out)
    }

    /// Every run as columns, cells in file order: hash, epochs, repeat
    /// (1-based), then halfway and final training time, train, validation
    /// and test accuracy (NaN where absent).
    #[allow(clippy::type_complexity)]
    fn run_columns(&self) -> PyResult<(Vec<String>, Vec<u32>, Vec<u8>, Vec<Vec<f64>>)> {
        let order = self.ix.file_order().map_err(py_err)?;
        let (mut hashes, mut epochs, mut repeats) = (Vec::new(), Vec::new(), Vec::new());
        let mut values: Vec<Vec<f64>> = vec![Vec::new(); 8];
        let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
        for &c in &order {
            let c = c as usize;
            let h = self.ix.hash(c).to_hex();
            for &e in self.ix.budget_order() {
                let Some(b) = self.ix.budget_index(e) else {
                    continue;
                };
                for r in 0..self.ix.repeat_count(c, b) {
                    let Some(run) = self.ix.run(c, b, r).map_err(py_err)? else {
                        continue;
                    };
                    hashes.push(h.clone());
                    epochs.push(e);
                    repeats.push((r + 1) as u8);
                    let p = [run.halfway, run.last];
                    for (k, pt) in p.iter().enumerate() {
                        values[k * 4].push(nan(pt.training_time));
                        values[k * 4 + 1].push(nan(pt.train_accuracy));
                        values[k * 4 + 2].push(nan(pt.validation_accuracy));
                        values[k * 4 + 3].push(nan(pt.test_accuracy));
                    }
                }
            }
        }
        Ok((hashes, epochs, repeats, values))
    }
}

/// The base of `nasbench.api.NASBench`: holds the open dataset (`_ds`) and
/// answers `query` without a Python frame. The budget counters and
/// `valid_epochs` stay ordinary attributes of the instance, which `query`
/// reads and updates with Python's own arithmetic, as the original does.
#[pyclass(
    module = "nasbench._core",
    name = "NASBenchBase",
    subclass,
    dict,
    weakref
)]
pub struct NASBenchBase {
    ds: Option<Py<Dataset>>,
}

#[pymethods]
impl NASBenchBase {
    /// Takes the subclass's arguments; its `__init__` opens the dataset.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        NASBenchBase { ds: None }
    }

    /// The open dataset.
    #[getter(_ds)]
    fn get_ds(&self, py: Python<'_>) -> PyResult<Py<Dataset>> {
        self.ds
            .as_ref()
            .map(|d| d.clone_ref(py))
            .ok_or_else(|| PyAttributeError::new_err("_ds: the dataset is not open"))
    }

    #[setter(_ds)]
    fn set_ds(&mut self, ds: Py<Dataset>) {
        self.ds = Some(ds);
    }

    /// Fetch one of the evaluations for this model spec.
    ///
    /// Each call samples one of the ``config['num_repeats']`` evaluations
    /// with ``random.randint`` and adds the returned training time and the
    /// epochs (half of them with ``stop_halfway``) to the budget counters
    /// ``training_time_spent`` and ``total_epochs_spent``.
    ///
    /// Args:
    ///   model_spec: ModelSpec object.
    ///   epochs: number of epochs trained, one of ``valid_epochs``.
    ///   stop_halfway: return the time and accuracies at the halfway point.
    ///
    /// Returns:
    ///   dict with module_adjacency, module_operations,
    ///   trainable_parameters, training_time, train_accuracy,
    ///   validation_accuracy, test_accuracy.
    ///
    /// Raises:
    ///   OutOfDomainError: if model_spec or epochs is outside the search
    ///     space.
    ///   KeyError: a valid spec that the dataset does not hold.
    #[pyo3(
        signature = (model_spec, epochs = None, stop_halfway = None),
        text_signature = "($self, model_spec, epochs=108, stop_halfway=False)"
    )]
    fn query<'py>(
        slf: &Bound<'py, Self>,
        model_spec: &Bound<'py, PyAny>,
        epochs: Option<&Bound<'py, PyAny>>,
        stop_halfway: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        let ds = slf.borrow().get_ds(py)?;
        let default_epochs;
        let epochs = match epochs {
            Some(e) => e,
            None => {
                default_epochs = 108u32.into_pyobject(py)?.into_any();
                &default_epochs
            }
        };
        let halfway = match stop_halfway {
            Some(s) => s.is_truthy()?,
            None => false,
        };
        let valid_epochs = slf.getattr(intern!(py, "valid_epochs"))?;
        let (data, time) =
            ds.borrow_mut(py)
                .query_one(py, model_spec, epochs, halfway, &valid_epochs)?;
        let spent = intern!(py, "training_time_spent");
        slf.setattr(spent, slf.getattr(spent)?.add(time)?)?;
        let total = intern!(py, "total_epochs_spent");
        let add = if halfway {
            epochs.floor_div(2)?
        } else {
            epochs.clone()
        };
        slf.setattr(total, slf.getattr(total)?.add(add)?)?;
        Ok(data)
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
