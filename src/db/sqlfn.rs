//! DuckDB scalar functions over cells (`nasbench_hash`, `prune`, `nasbench_is_valid`, `nasbench_check`, `nasbench_params`), vectorized over Arrow chunks.
//!
//! Every function takes `(matrix, ops)`: `matrix` as a nested integer list
//! (`INTEGER[][]` or `BIGINT[][]`) or a string (row-major bits `'0110...'` or
//! JSON), `ops` as a list of op names or a string (comma-separated names or
//! hash labels). A NULL argument gives NULL. A matrix or op list that is not
//! a cell (not square, not upper triangular, entries other than 0/1, ops of
//! the wrong length) is an SQL error naming the function, the argument and
//! the row. Nothing here panics; duckdb-rs also catches panics at the FFI
//! boundary and turns them into SQL errors.

use std::error::Error;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Int64Builder, ListBuilder, RecordBatch,
    StringBuilder, StructArray,
};
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Int64Type};
use duckdb::Connection;
use duckdb::vscalar::{ArrowFunctionSignature, VArrowScalar};

use crate::cell::network::{NetworkConfig, trainable_parameters};
use crate::cell::parse::{parse_matrix, parse_ops};
use crate::cell::spec::{Domain, ModelSpec, OutOfDomain};
use crate::db::export::list_of;

type SqlResult<T> = Result<T, Box<dyn Error>>;

/// The accepted argument types: matrix x ops.
fn signatures(ret: DataType) -> Vec<ArrowFunctionSignature> {
    let matrices = [
        list_of(list_of(DataType::Int32)),
        list_of(list_of(DataType::Int64)),
        DataType::Utf8,
    ];
    let ops = [list_of(DataType::Utf8), DataType::Utf8];
    let mut sigs = Vec::new();
    for m in &matrices {
        for o in &ops {
            sigs.push(ArrowFunctionSignature::exact(
                vec![m.clone(), o.clone()],
                ret.clone(),
            ));
        }
    }
    sigs
}

/// Row `i` of a matrix argument; `None` for NULL.
fn matrix_at(col: &dyn Array, i: usize) -> Result<Option<Vec<Vec<i64>>>, String> {
    if col.is_null(i) {
        return Ok(None);
    }
    match col.data_type() {
        DataType::Utf8 => parse_matrix(col.as_string::<i32>().value(i))
            .map(Some)
            .map_err(|e| e.message),
        DataType::List(_) => {
            let rows = col.as_list::<i32>().value(i);
            let rows = rows.as_list::<i32>();
            let mut out = Vec::with_capacity(rows.len());
            for r in 0..rows.len() {
                if rows.is_null(r) {
                    return Err(format!("row {r} is NULL"));
                }
                let row = rows.value(r);
                let values: Vec<Option<i64>> = match row.data_type() {
                    DataType::Int32 => row
                        .as_primitive::<Int32Type>()
                        .iter()
                        .map(|v| v.map(i64::from))
                        .collect(),
                    DataType::Int64 => row.as_primitive::<Int64Type>().iter().collect(),
                    t => return Err(format!("entries of type {t} are not integers")),
                };
                let values: Option<Vec<i64>> = values.into_iter().collect();
                out.push(values.ok_or_else(|| format!("row {r} holds a NULL entry"))?);
            }
            Ok(Some(out))
        }
        t => Err(format!("type {t} is not a matrix")),
    }
}

/// Row `i` of an ops argument; `None` for NULL.
fn ops_at(col: &dyn Array, i: usize) -> Result<Option<Vec<String>>, String> {
    if col.is_null(i) {
        return Ok(None);
    }
    match col.data_type() {
        DataType::Utf8 => parse_ops(col.as_string::<i32>().value(i))
            .map(Some)
            .map_err(|e| e.message),
        DataType::List(_) => {
            let list = col.as_list::<i32>().value(i);
            let names = list.as_string::<i32>();
            let ops: Option<Vec<String>> = names.iter().map(|o| o.map(str::to_string)).collect();
            ops.map(Some).ok_or_else(|| "an op is NULL".to_string())
        }
        t => Err(format!("type {t} is not an op list")),
    }
}

/// The spec of every row (`None` where an argument is NULL), or an SQL error
/// naming the function, argument and row.
fn specs(name: &str, input: &RecordBatch) -> SqlResult<Vec<Option<ModelSpec>>> {
    if input.num_columns() != 2 {
        return Err(format!("{name}: expected (matrix, ops)").into());
    }
    let (m, o) = (input.column(0), input.column(1));
    (0..input.num_rows())
        .map(|i| {
            let row = i + 1;
            let matrix = matrix_at(m.as_ref(), i)
                .map_err(|e| format!("{name}: argument matrix, row {row}: {e}"))?;
            let ops = ops_at(o.as_ref(), i)
                .map_err(|e| format!("{name}: argument ops, row {row}: {e}"))?;
            match (matrix, ops) {
                (Some(matrix), Some(ops)) => ModelSpec::new(&matrix, ops)
                    .map(Some)
                    .map_err(|e| format!("{name}: row {row}: {e}").into()),
                _ => Ok(None),
            }
        })
        .collect()
}

/// `nasbench_hash(matrix, ops) -> VARCHAR`: the dataset hash of the pruned
/// cell; NULL when the input does not reach the output.
pub struct NasbenchHash;

impl VArrowScalar for NasbenchHash {
    type State = ();

    fn invoke(_: &(), input: RecordBatch) -> SqlResult<ArrayRef> {
        let specs = specs("nasbench_hash", &input)?;
        let mut out = StringBuilder::with_capacity(specs.len(), specs.len() * 32);
        for (i, s) in specs.iter().enumerate() {
            match s.as_ref().map(ModelSpec::hash) {
                None | Some(Err(OutOfDomain::Disconnected)) => out.append_null(),
                Some(Ok(h)) => out.append_value(h.to_hex()),
                Some(Err(e)) => {
                    return Err(format!("nasbench_hash: argument ops, row {}: {e}", i + 1).into());
                }
            }
        }
        Ok(Arc::new(out.finish()))
    }

    fn signatures() -> Vec<ArrowFunctionSignature> {
        signatures(DataType::Utf8)
    }
}

fn prune_fields() -> Fields {
    Fields::from(vec![
        Field::new("matrix", list_of(list_of(DataType::Int32)), true),
        Field::new("ops", list_of(DataType::Utf8), true),
    ])
}

/// `prune(matrix, ops) -> STRUCT(matrix INTEGER[][], ops VARCHAR[])`: the
/// cell without the vertices off every input -> output path, as the
/// original `ModelSpec` prunes it; NULL when the input does not reach the
/// output.
pub struct Prune;

impl VArrowScalar for Prune {
    type State = ();

    fn invoke(_: &(), input: RecordBatch) -> SqlResult<ArrayRef> {
        let specs = specs("prune", &input)?;
        let mut matrix = ListBuilder::new(ListBuilder::new(arrow::array::Int32Builder::new()));
        let mut ops = ListBuilder::new(StringBuilder::new());
        let mut valid = Vec::with_capacity(specs.len());
        for s in &specs {
            match s.as_ref().and_then(|s| s.matrix().zip(s.ops())) {
                Some((m, o)) => {
                    for r in m.to_nested() {
                        for v in r {
                            matrix.values().values().append_value(i32::from(v));
                        }
                        matrix.values().append(true);
                    }
                    matrix.append(true);
                    for op in o {
                        ops.values().append_value(op);
                    }
                    ops.append(true);
                    valid.push(true);
                }
                None => {
                    matrix.append_null();
                    ops.append_null();
                    valid.push(false);
                }
            }
        }
        let fields = prune_fields();
        let m = matrix.finish();
        let o = ops.finish();
        let columns: Vec<ArrayRef> = vec![Arc::new(m), Arc::new(o)];
        let s = StructArray::try_new(fields, columns, Some(valid.into()))?;
        Ok(Arc::new(s))
    }

    fn signatures() -> Vec<ArrowFunctionSignature> {
        signatures(DataType::Struct(prune_fields()))
    }
}

/// `nasbench_is_valid(matrix, ops) -> BOOLEAN`: the original `is_valid`:
/// the pruned cell lies inside the dataset's domain.
pub struct NasbenchIsValid;

impl VArrowScalar for NasbenchIsValid {
    type State = ();

    fn invoke(_: &(), input: RecordBatch) -> SqlResult<ArrayRef> {
        let domain = Domain::default();
        let specs = specs("nasbench_is_valid", &input)?;
        let mut out = BooleanBuilder::with_capacity(specs.len());
        for s in &specs {
            out.append_option(s.as_ref().map(|s| s.is_valid(&domain)));
        }
        Ok(Arc::new(out.finish()))
    }

    fn signatures() -> Vec<ArrowFunctionSignature> {
        signatures(DataType::Boolean)
    }
}

/// `nasbench_check(matrix, ops) -> VARCHAR`: NULL when the cell is valid,
/// else the original's `OutOfDomainError` message.
pub struct NasbenchCheck;

impl VArrowScalar for NasbenchCheck {
    type State = ();

    fn invoke(_: &(), input: RecordBatch) -> SqlResult<ArrayRef> {
        let domain = Domain::default();
        let specs = specs("nasbench_check", &input)?;
        let mut out = StringBuilder::new();
        for s in &specs {
            out.append_option(
                s.as_ref()
                    .and_then(|s| s.check(&domain).err().map(|e| e.to_string())),
            );
        }
        Ok(Arc::new(out.finish()))
    }

    fn signatures() -> Vec<ArrowFunctionSignature> {
        signatures(DataType::Utf8)
    }
}

/// `nasbench_params(matrix, ops) -> BIGINT`: trainable parameters of the
/// dataset's network (3 stacks of 3 cells, 128 channels, 10 classes) built
/// from the cell; NULL when the cell is invalid.
pub struct NasbenchParams;

impl VArrowScalar for NasbenchParams {
    type State = ();

    fn invoke(_: &(), input: RecordBatch) -> SqlResult<ArrayRef> {
        let config = NetworkConfig::default();
        let specs = specs("nasbench_params", &input)?;
        let mut out = Int64Builder::with_capacity(specs.len());
        for s in &specs {
            let p = s
                .as_ref()
                .and_then(|s| trainable_parameters(s, &config).ok())
                .and_then(|p| i64::try_from(p).ok());
            out.append_option(p);
        }
        Ok(Arc::new(out.finish()))
    }

    fn signatures() -> Vec<ArrowFunctionSignature> {
        signatures(DataType::Int64)
    }
}

/// Registers every nasbench function on `conn`.
pub fn register(conn: &Connection) -> duckdb::Result<()> {
    conn.register_scalar_function::<NasbenchHash>("nasbench_hash")?;
    conn.register_scalar_function::<Prune>("prune")?;
    conn.register_scalar_function::<NasbenchIsValid>("nasbench_is_valid")?;
    conn.register_scalar_function::<NasbenchCheck>("nasbench_check")?;
    conn.register_scalar_function::<NasbenchParams>("nasbench_params")?;
    Ok(())
}
