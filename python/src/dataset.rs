//! The open dataset for Python (`Dataset`) and the base of `NASBench` (`NASBenchBase`): lookups, the draw from Python's `random`, the answer dicts, the batch calls and the tables.

use std::path::PathBuf;

use nasbench::api::{self, Index, NUM_REPEATS, RunMetrics};
use nasbench::cell::generate::{LabeledGraph, MAX_VERTICES, canonical_key};
use nasbench::cell::graph::ModelHash;
use nasbench::cell::ops::label_name;
use nasbench::cell::spec::{Domain, ModelSpec, OutOfDomain};
use numpy::{PyArray2, PyArrayMethods};
use pyo3::exceptions::{PyAttributeError, PyIndexError, PyKeyError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::spec::{Compact, PySpec, spec_from_attributes};
use crate::{OutOfDomainError, py_err};

/// The cells as columns: hash, vertices, adjacency bits, ops, parameters.
type ModelColumns = (Vec<String>, Vec<u8>, Vec<String>, Vec<String>, Vec<i64>);

/// The open dataset: a memory-mapped query index.
#[pyclass(module = "nasbench._core", name = "Dataset")]
pub struct Dataset {
    ix: Index,
    domain: Domain,
    random: Py<PyModule>,
    /// The standard library's `random.randint` and the `getrandbits` of
    /// the generator it draws from, when its draw can be made directly.
    randbits: Option<(Py<PyAny>, Py<PyAny>)>,
    /// The op names as Python strings by hash label (`label + 2`, so
    /// output, input, then the canonical ops), made once for
    /// `module_operations`.
    op_names: Vec<Py<PyString>>,
    /// `query`'s answer keys in the original's order, each set to None:
    /// every answer is a copy (one allocation at its final size, where
    /// seven insertions into a new dict grow it once on the way).
    answer: Py<PyDict>,
    path: PathBuf,
}

/// The keys of `query`'s answer, in the original's order.
const ANSWER_KEYS: [&str; 7] = [
    "module_adjacency",
    "module_operations",
    "trainable_parameters",
    "training_time",
    "train_accuracy",
    "validation_accuracy",
    "test_accuracy",
];

fn value(v: Option<f64>) -> f64 {
    // The original reads proto2 defaults where a value is absent.
    v.unwrap_or(0.0)
}

impl Dataset {
    /// A stored graph's `module_adjacency`: a new `int8` array (the
    /// original gives each answer its own), written from its rows.
    fn adjacency<'py>(&self, py: Python<'py>, g: &LabeledGraph) -> Bound<'py, PyArray2<i8>> {
        let n = usize::from(g.n).min(MAX_VERTICES);
        // SAFETY: a new C-ordered array, which nothing else references
        // yet: all n * n elements are written before it is returned.
        unsafe {
            let arr = PyArray2::<i8>::new(py, [n, n], false);
            let data = std::slice::from_raw_parts_mut(arr.data(), n * n);
            for (i, row) in data.chunks_exact_mut(n.max(1)).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = i8::from(g.rows[i] >> j & 1 != 0);
                }
            }
            arr
        }
    }

    fn fixed_dict<'py>(&mut self, py: Python<'py>, cell: usize) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        self.fill_fixed(py, &d, cell)?;
        Ok(d)
    }

    /// Sets the fixed statistics' three entries of `d` for `cell`.
    fn fill_fixed(&self, py: Python<'_>, d: &Bound<'_, PyDict>, cell: usize) -> PyResult<()> {
        let fixed = self.ix.fixed(cell);
        let g = &fixed.graph;
        d.set_item(intern!(py, "module_adjacency"), self.adjacency(py, g))?;
        let names = g.labels[..usize::from(g.n).min(MAX_VERTICES)]
            .iter()
            .map(|&l| self.op_name(py, l));
        d.set_item(intern!(py, "module_operations"), PyList::new(py, names)?)?;
        d.set_item(
            intern!(py, "trainable_parameters"),
            fixed.trainable_parameters.unwrap_or(0),
        )?;
        Ok(())
    }

    /// The Python string of the op with hash label `label` (`?` for a
    /// label no op has, as [`nasbench::cell::generate::LabeledGraph::ops`] names it).
    fn op_name<'py>(&self, py: Python<'py>, label: i8) -> Bound<'py, PyString> {
        match usize::try_from(i16::from(label) + 2)
            .ok()
            .and_then(|k| self.op_names.get(k))
        {
            Some(s) => s.bind(py).clone(),
            None => PyString::new(py, "?"),
        }
    }

    /// The cell of a spec object (ours or any with the original's
    /// attributes), after the original's domain checks.
    fn cell_of(&self, spec: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.cell_of_prefetching(spec, None)
    }

    /// [`Dataset::cell_of`], asking for the cell's runs at budget index
    /// `budget` as soon as the lookup knows the cell.
    fn cell_of_prefetching(
        &self,
        spec: &Bound<'_, PyAny>,
        budget: Option<usize>,
    ) -> PyResult<usize> {
        let ours = spec.cast::<PySpec>().ok();
        if let Some(ours) = &ours {
            let me = ours.borrow();
            if let Some(c) = &me.compact {
                return self.lookup_compact(c, budget);
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
    fn lookup_compact(&self, c: &Compact, budget: Option<usize>) -> PyResult<usize> {
        let Some(pruned) = &c.pruned else {
            return Err(OutOfDomainError::new_err(
                OutOfDomain::Disconnected.to_string(),
            ));
        };
        pruned
            .check(&self.domain)
            .map_err(|e| OutOfDomainError::new_err(e.to_string()))?;
        if self.ix.keys_unique()
            && let Some(cell) = self
                .ix
                .find_key_prefetching(canonical_key(pruned), budget)
                .map_err(py_err)?
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
        // The budget is known first, but its errors come after the spec's.
        let e = Self::epochs_of(epochs);
        let hint = e.as_ref().ok().and_then(|&e| self.ix.budget_index(e));
        let cell = self.cell_of_prefetching(spec, hint)?;
        let e = e?;
        // Again for the cell found: the key table's first slot may have
        // named another one, and a spec looked up by hash passes no table.
        if let Some(b) = hint {
            self.ix.prefetch_runs(cell, b);
        }
        let p = self.sample(py, cell, e, stop_halfway)?;
        let d = self.answer.bind(py).copy()?;
        self.fill_fixed(py, &d, cell)?;
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
    for (at, p) in [("halfway", &run.halfway), ("final", &run.last)] {
        d.set_item(format!("{at}_training_time"), value(p.training_time))?;
        d.set_item(format!("{at}_train_accuracy"), value(p.train_accuracy))?;
        d.set_item(
            format!("{at}_validation_accuracy"),
            value(p.validation_accuracy),
        )?;
        d.set_item(format!("{at}_test_accuracy"), value(p.test_accuracy))?;
    }
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
        let answer = PyDict::new(py);
        for k in ANSWER_KEYS {
            answer.set_item(PyString::intern(py, k), py.None())?;
        }
        Ok(Dataset {
            answer: answer.unbind(),
            ix,
            domain: Domain::default(),
            randbits: direct_draw(&random).unwrap_or(None),
            op_names: (-2..=2)
                .map(|l| PyString::new(py, label_name(l).unwrap_or("?")).unbind())
                .collect(),
            random: random.unbind(),
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
