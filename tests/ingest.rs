//! Ingest of the real sample and of hand-made files into DuckDB: values, the original API's view, errors, atomicity, windows, Parquet.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::REAL_CELLS;
use duckdb::Connection;
use nasbench::cell::generate::{GenerateOptions, NoProgress, generate};
use nasbench::dataset::record::{ModelMetrics, decode, encode};
use nasbench::dataset::synth::{SynthOptions, write_synthetic};
use nasbench::dataset::tfrecord::{scan, write_record};
use nasbench::db::create_atomically;
use nasbench::db::ingest::{IngestError, IngestOptions, Summary, export_parquet, ingest};

const SAMPLE: &[u8] = include_bytes!("fixtures/nasbench_real_sample.tfrecord");
/// Every evaluation point of the sample, decoded by the independent pure
/// Python reader tests/fixtures/decode_sample.py.
const VALUES: &str = include_str!("fixtures/real_sample_values.tsv");

/// The data of each sample record, in file order.
fn sample_records() -> Vec<Vec<u8>> {
    let (frames, err) = scan(SAMPLE);
    assert_eq!(err, None);
    frames
        .iter()
        .map(|f| f.check(SAMPLE).unwrap().to_vec())
        .collect()
}

fn framed(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        write_record(&mut out, r).unwrap();
    }
    out
}

fn ingest_bytes_with(
    dir: &Path,
    bytes: &[u8],
    opts: &IngestOptions,
) -> (PathBuf, Result<Summary, IngestError>) {
    let file = dir.join("input.tfrecord");
    std::fs::write(&file, bytes).unwrap();
    let db = dir.join("test.duckdb");
    let r = create_atomically(&db, |conn| ingest(conn, &file, opts, &NoProgress));
    (db, r)
}

fn ingest_bytes(dir: &Path, bytes: &[u8]) -> (PathBuf, Summary) {
    let (db, r) = ingest_bytes_with(dir, bytes, &IngestOptions::default());
    (db, r.unwrap())
}

fn opt_f64(s: &str) -> Option<f64> {
    (s != "NULL").then(|| s.parse().unwrap())
}

/// Every row of `evaluations` as text, keyed by (hash, epochs, repeat, point).
type Rows = BTreeMap<(String, i32, i32, i32), Vec<Option<String>>>;

fn evaluation_rows(conn: &Connection) -> Rows {
    let mut stmt = conn
        .prepare(
            "SELECT hash, epochs, repeat, point, current_epoch, training_time, train_accuracy,
                    validation_accuracy, test_accuracy, checkpoint_path, total_time, source
             FROM evaluations",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            let key = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            let mut vals = Vec::new();
            for i in 4..12 {
                let v: duckdb::types::Value = r.get(i)?;
                vals.push(match v {
                    duckdb::types::Value::Null => None,
                    duckdb::types::Value::Double(d) => Some(format!("{d:?}")),
                    duckdb::types::Value::Text(t) => Some(t),
                    other => Some(format!("{other:?}")),
                });
            }
            Ok((key, vals))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

#[test]
fn real_sample_gives_the_real_values_with_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let (db, s) = ingest_bytes(dir.path(), SAMPLE);
    assert_eq!((s.records, s.cells, s.runs, s.evaluations), (18, 3, 18, 54));
    assert_eq!(s.budgets, [4, 12, 36, 108]);
    assert_eq!(s.synthetic_runs, 0);
    // Two cells only have 108 epochs: the summary says so.
    assert_eq!(s.anomalies.cells_missing_budgets, 2);
    assert!(s.anomalies.unexpected_repeats.is_empty());
    let conn = Connection::open(&db).unwrap();
    let rows = evaluation_rows(&conn);
    assert_eq!(rows.len(), 54);

    // The Python reader's rows, in file order; repeats count per (hash,
    // epochs) in file order.
    let mut repeat: BTreeMap<(String, i32), i32> = BTreeMap::new();
    let mut last_record = None;
    let mut checked = 0;
    for line in VALUES.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (record, hash, epochs, point) = (
            f[0],
            f[1].to_string(),
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
        );
        if last_record != Some(record.to_string()) {
            *repeat.entry((hash.clone(), epochs)).or_insert(0) += 1;
            last_record = Some(record.to_string());
        }
        let rep = repeat[&(hash.clone(), epochs)];
        let got = &rows[&(hash.clone(), epochs, rep, point)];
        for (k, want) in f[4..9].iter().enumerate() {
            let got = got[k].as_ref().map(|g| g.parse::<f64>().unwrap());
            assert_eq!(
                got,
                opt_f64(want),
                "{hash} {epochs} repeat {rep} point {point} column {k}"
            );
        }
        assert_eq!(got[5], None, "checkpoint_path is absent in the sample");
        assert_eq!(
            got[6], None,
            "total_time is absent in the sample: NULL, not 0"
        );
        assert_eq!(got[7].as_deref(), Some("nasbench-101"));
        checked += 1;
    }
    assert_eq!(checked, 54);

    // The SPEC's real value, through the runs view.
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM runs WHERE hash = '28cfc7874f6d200472e1a9dcd8650aa0' AND epochs = 108
               AND final_training_time = 1155.85302734375
               AND final_validation_accuracy = 0.9376001358032227
               AND final_test_accuracy = 0.9311898946762085",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);

    // The cells, with the real parameter counts.
    for (hash, bits, ops, params) in REAL_CELLS {
        let (adj, ops_got, p, nv): (String, String, i64, i32) = conn
            .query_row(
                "SELECT adjacency, array_to_string(ops, ','), trainable_parameters, num_vertices
                 FROM models WHERE hash = ?",
                [hash],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            (adj.as_str(), ops_got.as_str(), p as u64),
            (bits, ops, params)
        );
        assert_eq!((nv * nv) as usize, bits.len());
        // The nested matrix is the same matrix as the bit string.
        let flat: String = conn
            .query_row(
                "SELECT array_to_string(flatten(matrix), '') FROM models WHERE hash = ?",
                [hash],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(flat, bits);
    }
}

/// A port of the loading loop of the original `api.py` (NASBench.__init__):
/// hash -> epochs -> list of data points in file order, with the halfway
/// (evaluation_data[1]) and final (evaluation_data[2]) metrics.
fn original_api_view(bytes: &[u8]) -> BTreeMap<(String, i64), Vec<[Option<f64>; 8]>> {
    let mut computed: BTreeMap<(String, i64), Vec<[Option<f64>; 8]>> = BTreeMap::new();
    let (frames, _) = scan(bytes);
    for f in frames {
        let r = decode(f.check(bytes).unwrap()).unwrap();
        let half = &r.metrics.evaluation_data[1];
        let fin = &r.metrics.evaluation_data[2];
        computed
            .entry((r.hash.to_string(), r.epochs))
            .or_default()
            .push([
                half.training_time,
                half.train_accuracy,
                half.validation_accuracy,
                half.test_accuracy,
                fin.training_time,
                fin.train_accuracy,
                fin.validation_accuracy,
                fin.test_accuracy,
            ]);
    }
    computed
}

fn runs_view(conn: &Connection) -> BTreeMap<(String, i64), Vec<[Option<f64>; 8]>> {
    let mut stmt = conn
        .prepare(
            "SELECT hash, epochs, repeat,
                    halfway_training_time, halfway_train_accuracy, halfway_validation_accuracy,
                    halfway_test_accuracy, final_training_time, final_train_accuracy,
                    final_validation_accuracy, final_test_accuracy
             FROM runs ORDER BY hash, epochs, repeat",
        )
        .unwrap();
    let mut out: BTreeMap<(String, i64), Vec<[Option<f64>; 8]>> = BTreeMap::new();
    let rows = stmt
        .query_map([], |r| {
            let mut v = [None; 8];
            for (k, x) in v.iter_mut().enumerate() {
                *x = r.get(3 + k)?;
            }
            let repeat: i64 = r.get(2)?;
            Ok(((r.get::<_, String>(0)?, r.get::<_, i64>(1)?), repeat, v))
        })
        .unwrap();
    for row in rows {
        let (key, repeat, v) = row.unwrap();
        let list = out.entry(key).or_default();
        assert_eq!(list.len() as i64 + 1, repeat, "repeats number 1..n");
        list.push(v);
    }
    out
}

#[test]
fn runs_view_equals_the_original_api() {
    // In file order, and with the records reversed and interleaved (the
    // repeats follow file order within each (hash, epochs)).
    let mut records = sample_records();
    for pass in 0..2 {
        let bytes = framed(&records);
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = ingest_bytes(dir.path(), &bytes);
        let conn = Connection::open(&db).unwrap();
        assert_eq!(runs_view(&conn), original_api_view(&bytes), "pass {pass}");
        records.reverse();
        records.swap(0, 9);
    }
}

#[test]
fn model_stats_summarise_the_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = ingest_bytes(dir.path(), SAMPLE);
    let conn = Connection::open(&db).unwrap();
    let api = original_api_view(SAMPLE);
    for ((hash, epochs), points) in &api {
        let vals: Vec<f64> = points.iter().map(|p| p[6].unwrap()).collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (vals.len() - 1) as f64;
        let max = vals.iter().cloned().fold(f64::MIN, f64::max);
        let (n, m, sd, mx): (i64, f64, f64, f64) = conn
            .query_row(
                "SELECT repeats, mean_final_validation_accuracy, std_final_validation_accuracy,
                        max_final_validation_accuracy
                 FROM model_stats WHERE hash = ? AND epochs = ?",
                duckdb::params![hash, epochs],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(n, 3);
        assert!((m - mean).abs() < 1e-12 && (sd - var.sqrt()).abs() < 1e-12 && mx == max);
    }
}

#[test]
fn failed_ingest_leaves_the_earlier_database_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = ingest_bytes(dir.path(), SAMPLE);
    let before = std::fs::read(&db).unwrap();
    // Corrupt the data of the last record: the failure comes after 17
    // records were appended to the new database.
    let mut bad = SAMPLE.to_vec();
    let at = bad.len() - 30;
    bad[at] ^= 0x01;
    let (db2, r) = ingest_bytes_with(dir.path(), &bad, &IngestOptions::default());
    assert_eq!(db2, db);
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("record 17 at byte") && e.contains("data CRC mismatch"),
        "{e}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // The input, the database, and the writers' lock file: no temporaries.
    assert_eq!(
        names,
        ["input.tfrecord", "test.duckdb", "test.duckdb.lock"],
        "no temporary files left"
    );
}

#[test]
fn reingest_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = ingest_bytes(dir.path(), SAMPLE);
    let first = evaluation_rows(&Connection::open(&db).unwrap());
    let (db, _) = ingest_bytes(dir.path(), SAMPLE);
    let conn = Connection::open(&db).unwrap();
    assert_eq!(evaluation_rows(&conn), first);
    let n: i64 = conn
        .query_row("SELECT count(*) FROM models", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
}

#[test]
fn models_hash_is_the_primary_key() {
    // keys.sql adds the key after the bulk load: it must be there, and
    // enforced, in the finished database.
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = ingest_bytes(dir.path(), SAMPLE);
    let conn = Connection::open(&db).unwrap();
    let key: String = conn
        .query_row(
            "SELECT array_to_string(constraint_column_names, ',') FROM duckdb_constraints() \
             WHERE table_name = 'models' AND constraint_type = 'PRIMARY KEY'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(key, "hash");
    let dup = conn.execute_batch("INSERT INTO models SELECT * FROM models LIMIT 1");
    let msg = dup.expect_err("a duplicate hash is refused").to_string();
    assert!(
        msg.contains("PRIMARY KEY") || msg.contains("primary key"),
        "{msg}"
    );
}

fn skip() -> IngestOptions {
    IngestOptions {
        skip_bad_records: true,
        ..IngestOptions::default()
    }
}

#[test]
fn bad_records_stop_the_ingest_or_are_skipped() {
    let (frames, _) = scan(SAMPLE);
    // (what to break, byte within record 5, expected words)
    let cases: [(&str, usize, &str); 4] = [
        ("length", 2, "length CRC mismatch"),
        ("length CRC", 9, "length CRC mismatch"),
        ("data", 40, "data CRC mismatch"),
        (
            "data CRC",
            12 + frames[5].len as usize + 1,
            "data CRC mismatch",
        ),
    ];
    for (what, byte, words) in cases {
        let mut bad = SAMPLE.to_vec();
        bad[frames[5].offset as usize + byte] ^= 0x10;
        let dir = tempfile::tempdir().unwrap();
        let (_, r) = ingest_bytes_with(dir.path(), &bad, &IngestOptions::default());
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains(&format!("record 5 at byte {}", frames[5].offset)) && e.contains(words),
            "{what}: {e}"
        );
        let (db, r) = ingest_bytes_with(dir.path(), &bad, &skip());
        let s = r.unwrap();
        assert_eq!((s.skipped, s.runs), (1, 17), "{what}");
        assert_eq!(s.skipped_examples[0].offset, frames[5].offset, "{what}");
        let n: i64 = Connection::open(&db)
            .unwrap()
            .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 17, "{what}: every other record is kept");
    }
}

#[test]
fn truncated_file_and_bad_payloads_name_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let (frames, _) = scan(SAMPLE);
    let cut = &SAMPLE[..SAMPLE.len() - 7];
    let (_, r) = ingest_bytes_with(dir.path(), cut, &IngestOptions::default());
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "record 17 at byte {}: truncated",
            frames[17].offset
        )),
        "{e}"
    );
    let s = ingest_bytes_with(dir.path(), cut, &skip()).1.unwrap();
    assert_eq!((s.runs, s.skipped), (17, 1));

    let mut records = sample_records();
    let good = records[3].clone();
    let r = decode(&good).unwrap();
    let payloads: [(Vec<u8>, &str); 4] = [
        (b"[not json".to_vec(), "bad JSON row"),
        (
            format!(
                r#"["{}", 108, "{}", "{}", "%%%"]"#,
                r.hash, r.adjacency, r.operations
            )
            .into_bytes(),
            "bad base64",
        ),
        (
            // Base64 of bytes that are not a ModelMetrics (a truncated varint).
            format!(
                r#"["{}", 108, "{}", "{}", "CP8="]"#,
                r.hash, r.adjacency, r.operations
            )
            .into_bytes(),
            "undecodable ModelMetrics",
        ),
        (
            encode(
                "28CFC7874F6D200472E1A9DCD8650AA0",
                108,
                &r.adjacency,
                &r.operations,
                &r.metrics,
            )
            .unwrap(),
            "not 32 lowercase hex digits",
        ),
    ];
    for (payload, words) in payloads {
        records[3] = payload;
        let bytes = framed(&records);
        let offset = scan(&bytes).0[3].offset;
        let (_, r) = ingest_bytes_with(dir.path(), &bytes, &IngestOptions::default());
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains(&format!("input.tfrecord: record 3 at byte {offset}: "))
                && e.contains(words),
            "{words}: {e}"
        );
        let s = ingest_bytes_with(dir.path(), &bytes, &skip()).1.unwrap();
        assert_eq!((s.runs, s.skipped), (17, 1), "{words}");
    }
}

#[test]
fn a_wrong_stored_hash_is_an_error_naming_the_record() {
    let mut records = sample_records();
    let r = decode(&records[12]).unwrap();
    // The matrix and ops of one cell under another cell's key.
    let wrong = "00005c142e6f48ac74fdcf73e3439875";
    records[12] = encode(wrong, r.epochs, &r.adjacency, &r.operations, &r.metrics).unwrap();
    let bytes = framed(&records);
    let offset = scan(&bytes).0[12].offset;
    let dir = tempfile::tempdir().unwrap();
    let (_, res) = ingest_bytes_with(dir.path(), &bytes, &IngestOptions::default());
    let e = res.unwrap_err().to_string();
    assert!(
        e.contains(&format!("record 12 at byte {offset}"))
            && e.contains(&format!(
                "stored hash {wrong} is not the hash of its matrix and ops"
            )),
        "{e}"
    );
    let (db, res) = ingest_bytes_with(dir.path(), &bytes, &skip());
    let s = res.unwrap();
    assert_eq!((s.anomalies.hash_mismatches, s.cells, s.runs), (1, 3, 17));
    let n: i64 = Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM evaluations WHERE hash = ?",
            [wrong],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0);
}

/// A stored cell that pruning changes (a vertex fed by the input that
/// feeds nothing): its hash is checked on the pruned cell, and `models`
/// keeps the matrix as stored.
#[test]
fn a_stored_cell_that_prunes_is_hashed_pruned_and_stored_as_is() {
    let records = sample_records();
    let r = decode(&records[0]).unwrap();
    let n = r.adjacency.len().isqrt();
    let m = n + 1;
    // Vertices 0..n-1 keep their numbers, the output moves to m - 1, the
    // new vertex n - 1 gets one edge from the input.
    let at = |v: usize| if v == n - 1 { m - 1 } else { v };
    let mut bits = vec![b'0'; m * m];
    for i in 0..n {
        for j in 0..n {
            bits[at(i) * m + at(j)] = r.adjacency.as_bytes()[i * n + j];
        }
    }
    bits[n - 1] = b'1';
    let adjacency = String::from_utf8(bits).unwrap();
    let mut ops: Vec<&str> = r.operations.split(',').collect();
    ops.insert(n - 1, "maxpool3x3");
    let operations = ops.join(",");
    let dir = tempfile::tempdir().unwrap();

    let record = encode(&r.hash, r.epochs, &adjacency, &operations, &r.metrics).unwrap();
    let (db, s) = ingest_bytes(dir.path(), &framed(&[record]));
    assert_eq!((s.cells, s.anomalies.hash_mismatches), (1, 0));
    let row: (String, i32, String, String) = Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT hash, num_vertices, adjacency, array_to_string(ops, ',') FROM models",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        row,
        (
            r.hash.to_string(),
            m as i32,
            adjacency.clone(),
            operations.clone()
        )
    );

    // The unpruned cell's own hash is not the stored one.
    let other = "0123456789abcdef0123456789abcdef";
    let record = encode(other, r.epochs, &adjacency, &operations, &r.metrics).unwrap();
    let (_, res) = ingest_bytes_with(dir.path(), &framed(&[record]), &IngestOptions::default());
    let e = res.unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "stored hash {other} is not the hash of its matrix and ops ({})",
            r.hash
        )),
        "{e}"
    );
}

#[test]
fn a_cell_outside_the_space_is_an_error_naming_the_record_or_skipped() {
    let mut records = sample_records();
    let r = decode(&records[5]).unwrap();
    // A new key whose ops are not NAS-Bench-101's.
    let bad = "f".repeat(32);
    let ops = r
        .operations
        .replacen("conv3x3-bn-relu", "conv5x5-bn-relu", 1);
    assert_ne!(ops, r.operations);
    records[5] = encode(&bad, r.epochs, &r.adjacency, &ops, &r.metrics).unwrap();
    let bytes = framed(&records);
    let offset = scan(&bytes).0[5].offset;
    let dir = tempfile::tempdir().unwrap();
    let (_, res) = ingest_bytes_with(dir.path(), &bytes, &IngestOptions::default());
    let e = res.unwrap_err().to_string();
    assert!(
        e.contains(&format!("record 5 at byte {offset}: cell {bad}: ")),
        "{e}"
    );
    let (db, res) = ingest_bytes_with(dir.path(), &bytes, &skip());
    let s = res.unwrap();
    assert_eq!((s.skipped, s.cells, s.runs, s.evaluations), (1, 3, 17, 51));
    assert_eq!(s.skipped_examples[0].index, 5);
    let conn = Connection::open(&db).unwrap();
    for table in ["models", "evaluations"] {
        let n: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM {table} WHERE hash = ?"),
                [&bad],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
}

#[test]
fn anomalies_are_counted() {
    let mut records = sample_records();
    // Drop one 108-epoch repeat, duplicate another record, and give one run
    // a fourth evaluation point.
    let dropped = records
        .iter()
        .position(|d| decode(d).unwrap().hash == "00019e2cbab0bc93ca1a7816a099b2bd")
        .unwrap();
    records.remove(dropped);
    records.push(records[0].clone());
    let r = decode(&records[1]).unwrap();
    let mut m: ModelMetrics = r.metrics.clone();
    m.evaluation_data.push(m.evaluation_data[2].clone());
    records[1] = encode(&r.hash, r.epochs, &r.adjacency, &r.operations, &m).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (db, s) = ingest_bytes(dir.path(), &framed(&records));
    assert_eq!(
        s.anomalies.unexpected_repeats,
        BTreeMap::from([(2, 1), (4, 1)])
    );
    assert_eq!(s.anomalies.runs_without_three_points, 1);
    assert_eq!(s.evaluations, 18 * 3 + 1);
    // Nothing is dropped: the fourth point is a row.
    let n: i64 = Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM evaluations WHERE point = 3",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn checkpoint_paths_are_kept_but_the_bare_synthetic_mark() {
    let mut records = sample_records();
    let r = decode(&records[0]).unwrap();
    let mut m: ModelMetrics = r.metrics.clone();
    let paths = [
        "synthetic:",
        "synthetic:run-7/model.ckpt-1",
        "/data/model.ckpt-2",
    ];
    for (e, p) in m.evaluation_data.iter_mut().zip(paths) {
        e.checkpoint_path = Some(p.to_string());
    }
    let (hash, epochs) = (r.hash.to_string(), r.epochs);
    records[0] = encode(&r.hash, r.epochs, &r.adjacency, &r.operations, &m).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (db, s) = ingest_bytes(dir.path(), &framed(&records));
    assert_eq!(s.synthetic_runs, 1);
    let conn = Connection::open(&db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT point, checkpoint_path, source FROM evaluations
             WHERE hash = ? AND epochs = ? AND repeat = 1 ORDER BY point",
        )
        .unwrap();
    let rows: Vec<(i32, Option<String>, String)> = stmt
        .query_map(duckdb::params![hash, epochs], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let synthetic =
        |p: i32, path: Option<&str>| (p, path.map(str::to_string), "synthetic".to_string());
    assert_eq!(
        rows,
        [
            synthetic(0, None),
            synthetic(1, Some(paths[1])),
            synthetic(2, Some(paths[2])),
        ]
    );
    // The other records are the release's, without paths.
    let (others, with_path): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(checkpoint_path) FROM evaluations WHERE source = 'nasbench-101'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((others, with_path), (17 * 3, 0));
}

#[test]
fn synthetic_files_ingest_in_windows_and_say_they_are_synthetic() {
    let space = generate(&GenerateOptions::default(), &NoProgress).unwrap();
    let cells = &space.cells[100_000..100_400];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("synthetic.tfrecord");
    let opts = SynthOptions {
        budgets: vec![4, 108],
        repeats: 3,
        seed: 7,
    };
    let w = write_synthetic(&file, cells, &opts).unwrap();
    assert_eq!(w.records, 400 * 2 * 3);
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.len() > 4 << 16, "spans several 64 KiB windows");
    // Deterministic.
    write_synthetic(&dir.path().join("again.tfrecord"), cells, &opts).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("again.tfrecord")).unwrap(),
        bytes
    );

    let small = IngestOptions {
        window_bytes: 1 << 16,
        ..IngestOptions::default()
    };
    let (db, r) = ingest_bytes_with(dir.path(), &bytes, &small);
    let s = r.unwrap();
    assert_eq!(
        (s.records, s.cells, s.runs, s.synthetic_runs),
        (2400, 400, 2400, 2400)
    );
    assert!(s.anomalies.is_empty(), "{:?}", s.anomalies);
    let windowed = evaluation_rows(&Connection::open(&db).unwrap());
    let (db, _) = ingest_bytes(dir.path(), &bytes);
    let conn = Connection::open(&db).unwrap();
    assert_eq!(evaluation_rows(&conn), windowed);
    let (sources, bad_acc, paths): (String, i64, i64) = conn
        .query_row(
            "SELECT string_agg(DISTINCT source), count(*) FILTER (WHERE
                 abs(validation_accuracy * 9984 - round(validation_accuracy * 9984)) > 1e-3),
                 count(checkpoint_path)
             FROM evaluations",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    // The mark is in `source`; as a checkpoint path it names nothing.
    assert_eq!((sources.as_str(), bad_acc, paths), ("synthetic", 0, 0));
    // The stored cells are the generated ones.
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM models WHERE num_vertices = 7",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let want = cells.iter().filter(|c| c.graph.n == 7).count();
    assert_eq!(n as usize, want);
}

#[test]
fn parquet_export_is_ordered_and_complete() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.tfrecord");
    std::fs::write(&file, SAMPLE).unwrap();
    let db = dir.path().join("p.duckdb");
    let pq = dir.path().join("parquet");
    create_atomically(&db, |conn| {
        ingest(conn, &file, &IngestOptions::default(), &NoProgress)?;
        export_parquet(conn, &pq).map_err(IngestError::from)
    })
    .unwrap();
    // Read back with the parquet crate, not DuckDB.
    for (name, rows) in [("models.parquet", 3), ("evaluations.parquet", 54)] {
        let reader =
            SerializedFileReader::new(std::fs::File::open(pq.join(name)).unwrap()).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), rows, "{name}");
        let hashes: Vec<String> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap().get_string(0).unwrap().clone())
            .collect();
        if name == "models.parquet" {
            // The cells as they first appear in the file (hash_iterator's
            // order), read with the record decoder.
            let (frames, _) = nasbench::dataset::tfrecord::scan(SAMPLE);
            let mut first: Vec<String> = Vec::new();
            for f in &frames {
                let r = nasbench::dataset::record::decode(f.check(SAMPLE).unwrap()).unwrap();
                if !first.contains(&r.hash.to_string()) {
                    first.push(r.hash.to_string());
                }
            }
            assert_eq!(hashes, first, "{name} is in file order");
        } else {
            let mut sorted = hashes.clone();
            sorted.sort();
            assert_eq!(hashes, sorted, "{name} is sorted by hash");
        }
    }
}

#[test]
fn the_independent_python_reader_gives_the_committed_values() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("python3")
        .arg(format!("{dir}/tests/fixtures/decode_sample.py"))
        .arg(format!(
            "{dir}/tests/fixtures/nasbench_real_sample.tfrecord"
        ))
        .output();
    match out {
        Err(e) => common::skipped(&format!(
            "python3 is not available ({e}); .ci/run requires it"
        )),
        Ok(o) => {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(String::from_utf8_lossy(&o.stdout), VALUES);
        }
    }
}

/// (hash, epochs, repeat, point, training_time, validation_accuracy).
type OrderedRow = (String, i32, i32, i32, Option<f64>, Option<f64>);

/// Records are decoded in batches on several workers; a window's records
/// after its last whole batch are read again with the next window. With
/// every combination of window and batch size, the table holds every
/// evaluation of every record in file order, repeats numbered in file
/// order. 20,016 records: the sample cycled.
#[test]
fn many_records_load_in_file_order_across_chunks() {
    let sample = sample_records();
    let records: Vec<Vec<u8>> = sample.iter().cycle().take(18 * 1112).cloned().collect();
    let dir = tempfile::tempdir().unwrap();
    let bytes = framed(&records);

    // The expected rows, in file order, from the records themselves.
    let mut seen: BTreeMap<(String, i64), i32> = BTreeMap::new();
    let mut expect: Vec<OrderedRow> = Vec::new();
    for data in &records {
        let r = decode(data).unwrap();
        let repeat = seen.entry((r.hash.to_string(), r.epochs)).or_insert(0);
        *repeat += 1;
        for (p, e) in r.metrics.evaluation_data.iter().enumerate() {
            expect.push((
                r.hash.to_string(),
                r.epochs as i32,
                *repeat,
                p as i32,
                e.training_time,
                e.validation_accuracy,
            ));
        }
    }
    // One batch; 1 MiB windows (about 3,000 records) of 1,000-record
    // batches; 64 KiB windows (about 190 records) of 7-record batches.
    for (window_bytes, batch_records) in [(64 << 20, 40_960), (1 << 20, 1000), (1 << 16, 7)] {
        let opts = IngestOptions {
            window_bytes,
            batch_records,
            ..IngestOptions::default()
        };
        let (db, s) = ingest_bytes_with(dir.path(), &bytes, &opts);
        let s = s.unwrap();
        assert_eq!((s.records, s.runs, s.evaluations), (20_016, 20_016, 60_048));
        let conn = Connection::open(&db).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT hash, epochs, repeat, point, training_time, validation_accuracy
                 FROM evaluations ORDER BY rowid",
            )
            .unwrap();
        let got: Vec<OrderedRow> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got.len(), expect.len(), "{window_bytes} {batch_records}");
        for (i, (g, e)) in got.iter().zip(&expect).enumerate() {
            assert_eq!(g, e, "row {i} ({window_bytes} {batch_records})");
        }
    }
}
