//! `ModelSpec` for Python: reading matrices and ops from Python objects, the compact inline form of a dataset cell, and the attributes with the original's semantics.

use std::ffi::CString;
use std::sync::OnceLock;
use std::sync::atomic::AtomicPtr;
use std::sync::atomic::Ordering::Relaxed;

use nasbench::Matrix;
use nasbench::cell::generate::{LabeledGraph, MAX_VERTICES};
use nasbench::cell::graph::{MAX_MATRIX_VERTICES, hash_module};
use nasbench::cell::ops::label_name;
use nasbench::cell::spec::ModelSpec;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

/// Reads a matrix given as nested sequences (or anything with `tolist()`,
/// such as a numpy array) into rows of ints; `None` when it is not one.
pub(crate) fn read_matrix(m: &Bound<'_, PyAny>) -> PyResult<Option<Vec<Vec<i64>>>> {
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
    // Items are compared by address, read as borrowed references (no
    // reference-count traffic for the n * n + n items).
    let item = |list: &Bound<'_, PyAny>, i: usize| {
        // SAFETY: `list` is a live list; `i` is below its length, which the
        // caller checked under the GIL, so this borrowed reference is valid
        // while nothing runs Python code (nothing here does).
        unsafe { pyo3::ffi::PyList_GetItem(list.as_ptr(), i as pyo3::ffi::Py_ssize_t) }
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let row = item(rows.as_any(), i);
        // SAFETY: `row` is a borrowed reference to a live object (above).
        let row = unsafe { Bound::from_borrowed_ptr_or_opt(py, row) }?;
        let row = row.cast::<PyList>().ok()?;
        if row.len() != n {
            return None;
        }
        let mut bits = 0u64;
        for j in 0..n {
            let v = item(row.as_any(), j);
            if v == one.as_ptr() {
                bits |= 1 << j;
            } else if v != zero.as_ptr() {
                return None;
            }
        }
        out.push(bits);
    }
    Some(out)
}

/// Reads op names.
pub(crate) fn read_ops(ops: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
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

/// For each op name of [`op_labels`], in its order, the last `str` object
/// found equal to it, held by a strong reference (released when another
/// replaces it): search code passes the same string objects spec after
/// spec, which are then recognised by address instead of by comparing
/// text. Read and written only with the GIL held.
static SEEN_OPS: [AtomicPtr<pyo3::ffi::PyObject>; 5] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; 5];

/// The position in [`op_labels`] of the op name `op` (a `str`), if it is
/// one.
fn op_position(op: &Bound<'_, PyAny>) -> Option<usize> {
    let p = op.as_ptr();
    if let Some(k) = SEEN_OPS.iter().position(|s| s.load(Relaxed) == p) {
        return Some(k);
    }
    let k = op_labels().iter().position(|(name, _)| {
        // SAFETY: `op` is a live `str` (checked by the caller) and `name`
        // is NUL-terminated; the comparison raises no exception.
        unsafe { pyo3::ffi::PyUnicode_CompareWithASCIIString(p, name.as_ptr()) == 0 }
    })?;
    if let Some(seen) = SEEN_OPS.get(k) {
        let old = seen.swap(op.clone().into_ptr(), Relaxed);
        if !old.is_null() {
            // SAFETY: `old` is the strong reference this slot held; the GIL
            // is held (the caller has `op`), and freeing a `str` runs no
            // Python code.
            unsafe { pyo3::ffi::Py_DecRef(old) };
        }
    }
    Some(k)
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
        labels[v] = op_labels().get(op_position(&op)?)?.1;
    }
    Some(labels)
}

/// A spec of at most seven vertices whose ops are all the dataset's, kept
/// inline (as given, and pruned) instead of as a [`ModelSpec`], which is
/// built only when an attribute is read.
pub(crate) struct Compact {
    original: LabeledGraph,
    /// `None` for an invalid spec.
    pub(crate) pruned: Option<LabeledGraph>,
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
    pub(crate) fn spec(&self) -> PyResult<ModelSpec> {
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
    pub(crate) spec: Option<ModelSpec>,
    /// Instead of `spec`, the compact form of a spec built from one.
    pub(crate) compact: Option<Compact>,
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

pub(crate) fn numpy(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import("numpy")
}

pub(crate) fn nested<'py>(py: Python<'py>, m: &nasbench::Matrix) -> PyResult<Bound<'py, PyList>> {
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

    /// The spec as built: from its compact form the first time an
    /// attribute needs it, then kept (the compact form stays for queries);
    /// `None` after an attribute was assigned.
    fn built_spec(&mut self) -> PyResult<Option<&ModelSpec>> {
        if self.spec.is_none()
            && let Some(c) = &self.compact
        {
            self.spec = Some(c.spec()?);
        }
        Ok(self.spec.as_ref())
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
    pub(crate) fn current(slf: &Bound<'_, Self>) -> PyResult<Option<ModelSpec>> {
        if let Some(s) = slf.borrow_mut().built_spec()? {
            return Ok(Some(s.clone()));
        }
        spec_from_attributes(slf.as_any())
    }
}

/// A spec from any object with the original's attributes (`valid_spec`,
/// `matrix`, `ops`): `None` for an invalid one.
pub(crate) fn spec_from_attributes(obj: &Bound<'_, PyAny>) -> PyResult<Option<ModelSpec>> {
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
            let mut me = slf.borrow_mut();
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
            let mut me = slf.borrow_mut();
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
            let mut me = slf.borrow_mut();
            let dtype = me.dtype.as_ref().map(|d| d.clone_ref(py));
            match me.built_spec()?.and_then(ModelSpec::matrix) {
                None => py.None(),
                Some(pm) => {
                    let kw = PyDict::new(py);
                    if let Some(d) = dtype {
                        kw.set_item("dtype", d)?;
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
            let mut me = slf.borrow_mut();
            match me.built_spec()?.and_then(ModelSpec::ops) {
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
