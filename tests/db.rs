//! `NewDb::insert_arrow`: DuckDB's Arrow scan as the bulk-load path of
//! `nasbench ingest`. (In the integration binary, not among the library's
//! unit tests: those include one that removes every tracked temporary.)

use std::sync::Arc;

use arrow::array::{Int32Array, RecordBatch, RecordBatchIterator};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use nasbench::db::{DbError, DuckDbContext, create_atomically};

fn batch(schema: &Arc<Schema>, values: Vec<i32>) -> RecordBatch {
    RecordBatch::try_new(schema.clone(), vec![Arc::new(Int32Array::from(values))]).unwrap()
}

#[test]
fn arrow_insert_keeps_order_and_reports_reader_errors() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
    let path = dir.path().join("t.duckdb");
    let err = create_atomically(&path, |db| -> Result<(), DbError> {
        db.execute_batch("CREATE TABLE t (x INTEGER)")
            .during("creating t")?;
        // 40 batches of 3,000 rows: more than one row group, in order.
        let batches: Vec<_> = (0..40)
            .map(|b| Ok(batch(&schema, (b * 3000..(b + 1) * 3000).collect())))
            .collect();
        let reader = RecordBatchIterator::new(batches, schema.clone());
        assert_eq!(db.insert_arrow("t", Box::new(reader))?, 120_000);
        let out_of_order: i64 = db
            .query_row(
                "SELECT count(*) FROM (SELECT x, row_number() OVER () - 1 AS i FROM t) WHERE x <> i",
                [],
                |r| r.get(0),
            )
            .during("reading t")?;
        assert_eq!(out_of_order, 0);
        // A reader that fails: the insert fails with its message.
        let failing = vec![
            Ok(batch(&schema, vec![1, 2])),
            Err(ArrowError::ComputeError("record 7 is bad".into())),
        ];
        let reader = RecordBatchIterator::new(failing, schema.clone());
        db.insert_arrow("t", Box::new(reader)).map(|_| ())
    })
    .expect_err("the failing reader fails the insert");
    let msg = err.to_string();
    assert!(
        msg.contains("loading t") && msg.contains("record 7 is bad"),
        "{msg}"
    );
    // The failed build left nothing behind.
    assert!(!path.exists());
}
