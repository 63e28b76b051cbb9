//! Arrow and Parquet forms of the tables nasbench-db writes.

use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, ListBuilder, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::cell::generate::Cell;
use crate::output::{ExportError, write_atomically};

/// The element field of an Arrow list (named `item`, nullable, as DuckDB and
/// Arrow's builders name it).
pub fn list_item(t: DataType) -> Arc<Field> {
    Arc::new(Field::new("item", t, true))
}

/// An Arrow list of `t`.
pub fn list_of(t: DataType) -> DataType {
    DataType::List(list_item(t))
}

/// Schema of the generated search space (`nasbench generate`).
pub fn cells_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("hash", DataType::Utf8, false),
        Field::new("num_vertices", DataType::Int32, false),
        Field::new("num_edges", DataType::Int32, false),
        Field::new("adjacency", DataType::Utf8, false),
        Field::new("ops", list_of(DataType::Utf8), false),
        Field::new("trainable_parameters", DataType::Int64, false),
    ]))
}

/// The cells as one Arrow record batch with [`cells_schema`].
pub fn cells_batch(cells: &[Cell]) -> Result<RecordBatch, ExportError> {
    let hash: StringArray = cells.iter().map(|c| Some(c.hash.to_hex())).collect();
    let nv: Int32Array = cells.iter().map(|c| Some(i32::from(c.graph.n))).collect();
    let ne: Int32Array = cells
        .iter()
        .map(|c| Some(c.graph.num_edges() as i32))
        .collect();
    let adj: StringArray = cells
        .iter()
        .map(|c| Some(c.graph.adjacency_bits()))
        .collect();
    let mut ops = ListBuilder::new(StringBuilder::new()).with_field(list_item(DataType::Utf8));
    for c in cells {
        for op in c.graph.ops() {
            ops.values().append_value(op);
        }
        ops.append(true);
    }
    let params: Int64Array = cells
        .iter()
        .map(|c| Some(c.trainable_parameters as i64))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(hash),
        Arc::new(nv),
        Arc::new(ne),
        Arc::new(adj),
        Arc::new(ops.finish()),
        Arc::new(params),
    ];
    Ok(RecordBatch::try_new(cells_schema(), columns)?)
}

/// Writes record batches as a zstd-compressed Parquet file, atomically.
pub fn write_parquet(
    path: &Path,
    schema: Arc<Schema>,
    batches: &[RecordBatch],
) -> Result<(), ExportError> {
    let pq_err = |source| ExportError::Parquet {
        path: path.display().to_string(),
        source,
    };
    write_atomically(path, |file| {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let mut w =
            ArrowWriter::try_new(BufWriter::new(file), schema, Some(props)).map_err(pq_err)?;
        for b in batches {
            w.write(b).map_err(pq_err)?;
        }
        w.close().map_err(pq_err)?;
        Ok(())
    })
}
