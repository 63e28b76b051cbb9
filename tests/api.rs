//! The query API against an independent oracle (a Python port of the original api.py) on the real sample, in every store.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{REAL_CELLS, ROOT};
use nasbench::api::{ApiError, NasBench, QueryResult};
use nasbench::cell::generate::NoProgress;
use nasbench::cell::graph::ModelHash;
use nasbench::cell::spec::ModelSpec;
use nasbench::db::create_atomically;
use nasbench::db::ingest::{IngestOptions, export_parquet, ingest};
use serde_json::{Value, json};

const SEED: u64 = 20181101;

/// The real sample ingested into `dir/sample.duckdb`, and its Parquet export
/// in `dir/parquet`.
fn sample_sources(dir: &Path) -> (PathBuf, PathBuf) {
    let file = Path::new(ROOT).join("tests/fixtures/nasbench_real_sample.tfrecord");
    let db = dir.join("sample.duckdb");
    let pq = dir.join("parquet");
    create_atomically(&db, |conn| {
        let s = ingest(conn, &file, &IngestOptions::default(), &NoProgress);
        export_parquet(conn, &pq).map_err(nasbench::db::ingest::IngestError::from)?;
        s
    })
    .unwrap();
    (db, pq)
}

fn bits_matrix(bits: &str) -> Vec<Vec<i64>> {
    let n = (bits.len() as f64).sqrt() as usize;
    bits.as_bytes()
        .chunks(n)
        .map(|r| r.iter().map(|&b| i64::from(b - b'0')).collect())
        .collect()
}

/// The README's Inception-like cell as the README writes it: isomorphic to,
/// but not the same matrix as, the stored form.
fn readme_form() -> (Vec<Vec<i64>>, Vec<&'static str>) {
    (
        bits_matrix("0111010000000100000010000100000000100000010000000"),
        vec![
            "input",
            "conv1x1-bn-relu",
            "conv3x3-bn-relu",
            "conv3x3-bn-relu",
            "conv3x3-bn-relu",
            "maxpool3x3",
            "output",
        ],
    )
}

/// The fixed sequence of calls: every budget, halfway and final, stored
/// and non-canonical forms, a form with extraneous vertices, repeated
/// draws, a counter reset, and every error path.
fn calls() -> Vec<Value> {
    let mut calls = Vec::new();
    let q = |m: &Vec<Vec<i64>>, o: &[&str], e: u32, h: bool| json!({"call": "query", "matrix": m, "ops": o, "epochs": e, "halfway": h});
    let stored: Vec<(Vec<Vec<i64>>, Vec<&str>)> = REAL_CELLS
        .iter()
        .map(|(_, bits, ops, _)| (bits_matrix(bits), ops.split(',').collect()))
        .collect();
    for round in 0..4 {
        for (m, o) in &stored {
            calls.push(q(m, o, 108, round % 2 == 1));
        }
        for e in [4, 12, 36] {
            calls.push(q(&stored[0].0, &stored[0].1, e, round >= 2));
        }
    }
    let (rm, ro) = readme_form();
    for e in [4, 12, 36, 108] {
        calls.push(q(&rm, &ro, e, false));
        calls.push(q(&rm, &ro, e, true));
    }
    calls.push(json!({"call": "reset"}));
    // The README form plus a vertex that feeds nothing (pruned away).
    let mut big = rm.clone();
    for row in big.iter_mut() {
        row.insert(6, 0);
    }
    big.insert(6, vec![0; 8]);
    big[1][6] = 1;
    let mut bo = ro.clone();
    bo.insert(6, "conv5x5-not-an-op");
    calls.push(q(&big, &bo, 108, false));
    for _ in 0..10 {
        calls.push(q(&rm, &ro, 108, false));
    }
    // Errors, in the original's order of checks.
    calls.push(q(&rm, &ro, 5, false));
    calls.push(q(
        &vec![vec![0, 0], vec![0, 0]],
        &["input", "output"],
        108,
        false,
    ));
    calls.push(q(
        &vec![vec![0, 0], vec![0, 0]],
        &["input", "output"],
        7,
        false,
    ));
    let chain: Vec<Vec<i64>> = (0..8)
        .map(|i| (0..8).map(|j| i64::from(j == i + 1)).collect())
        .collect();
    let mut chain_ops = vec!["conv3x3-bn-relu"; 8];
    chain_ops[0] = "input";
    chain_ops[7] = "output";
    calls.push(q(&chain, &chain_ops, 108, false));
    // 5 vertices, 9 edges: every forward edge but input -> output.
    let dense: Vec<Vec<i64>> = (0..5)
        .map(|i| {
            (0..5)
                .map(|j| i64::from(j > i && (i, j) != (0, 4)))
                .collect()
        })
        .collect();
    let dense7: Vec<Vec<i64>> = (0..7)
        .map(|i| {
            (0..7)
                .map(|j| i64::from(j > i && (j == i + 1 || i == 0)))
                .collect()
        })
        .collect();
    let mut fourteen = dense7.clone();
    for (i, j) in [(1, 3), (2, 4), (3, 5)] {
        fourteen[i][j] = 1;
    }
    calls.push(q(
        &fourteen,
        &[
            "input",
            "conv3x3-bn-relu",
            "conv3x3-bn-relu",
            "conv3x3-bn-relu",
            "conv3x3-bn-relu",
            "conv3x3-bn-relu",
            "output",
        ],
        108,
        false,
    ));
    let five_ops = [
        "conv1x1-bn-relu",
        "conv3x3-bn-relu",
        "maxpool3x3",
        "maxpool3x3",
        "output",
    ];
    calls.push(q(&dense, &five_ops, 108, false));
    calls.push(q(
        &dense,
        &[
            "input",
            "conv3x3-bn-relu",
            "maxpool3x3",
            "maxpool3x3",
            "conv1x1-bn-relu",
        ],
        108,
        false,
    ));
    calls.push(q(
        &dense,
        &[
            "input",
            "conv3x3-bn-relu",
            "avgpool3x3",
            "maxpool3x3",
            "output",
        ],
        108,
        false,
    ));
    // Valid, but not in the sample (a KeyError in the original).
    calls.push(q(
        &vec![vec![0, 1], vec![0, 0]],
        &["input", "output"],
        108,
        false,
    ));
    // A budget of the file that this cell lacks (drawn, then a KeyError).
    calls.push(q(&stored[1].0, &stored[1].1, 12, false));
    for (m, o) in [(&rm, &ro[..]), (&dense, &five_ops[..]), (&big, &bo[..])] {
        calls.push(json!({"call": "is_valid", "matrix": m, "ops": o}));
    }
    calls.push(q(&stored[2].0, &stored[2].1, 108, true));
    calls
}

/// Runs the oracle on the sample and the calls; one JSON value per line.
fn oracle(dir: &Path, calls: &[Value]) -> Option<Vec<Value>> {
    let python = common::venv_bin("python").map_or_else(|| PathBuf::from("python3"), PathBuf::from);
    let qfile = dir.join("calls.json");
    std::fs::write(&qfile, serde_json::to_string(calls).unwrap()).unwrap();
    let out = Command::new(python)
        .arg(Path::new(ROOT).join("tests/fixtures/api_oracle.py"))
        .arg(Path::new(ROOT).join("tests/fixtures/nasbench_real_sample.tfrecord"))
        .arg(&qfile)
        .arg(SEED.to_string())
        .output()
        .expect("python3 runs the oracle");
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

fn spec_of(call: &Value) -> Result<ModelSpec, String> {
    let m: Vec<Vec<i64>> = serde_json::from_value(call["matrix"].clone()).unwrap();
    let o: Vec<String> = serde_json::from_value(call["ops"].clone()).unwrap();
    ModelSpec::new(&m, o).map_err(|e| e.to_string())
}

/// Checks one of our answers against the oracle's line.
fn compare(i: usize, call: &Value, ours: &Result<QueryResult, ApiError>, want: &Value) {
    let ctx = format!("call {i}: {call}");
    match ours {
        Ok(r) => {
            assert_eq!(want["index"], json!(r.repeat), "{ctx}: sampled repeat");
            let d = &want["data"];
            let adj: Vec<Vec<u8>> = r.fixed.module_adjacency().to_nested();
            assert_eq!(d["module_adjacency"], json!(adj), "{ctx}");
            assert_eq!(
                d["module_operations"],
                json!(r.fixed.module_operations()),
                "{ctx}"
            );
            assert_eq!(
                d["trainable_parameters"],
                json!(r.fixed.trainable_parameters),
                "{ctx}"
            );
            for (k, v) in [
                ("training_time", r.point.training_time),
                ("train_accuracy", r.point.train_accuracy),
                ("validation_accuracy", r.point.validation_accuracy),
                ("test_accuracy", r.point.test_accuracy),
            ] {
                assert_eq!(d[k].as_f64(), v, "{ctx}: {k}");
            }
        }
        Err(e) => match want["type"].as_str() {
            Some("OutOfDomainError") => {
                assert_eq!(
                    want["error"].as_str(),
                    Some(e.to_string().as_str()),
                    "{ctx}"
                )
            }
            Some("KeyError") => assert!(
                matches!(
                    e,
                    ApiError::UnknownHash(_) | ApiError::MissingRepeat { found: 0, .. }
                ),
                "{ctx}: {e:?} for {want}"
            ),
            other => panic!("{ctx}: we failed ({e}) where the oracle gave {other:?}: {want}"),
        },
    }
}

fn check_store(name: &str, nb: &mut NasBench, calls: &[Value], want: &[Value]) {
    assert_eq!(calls.len() + 1, want.len());
    for (i, (call, w)) in calls.iter().zip(want).enumerate() {
        match call["call"].as_str() {
            Some("reset") => nb.reset_budget_counters(),
            Some("is_valid") => {
                let spec = spec_of(call).unwrap();
                assert_eq!(json!(nb.is_valid(&spec)), w["valid"], "{name} call {i}");
            }
            _ => {
                let spec = match spec_of(call) {
                    Ok(s) => s,
                    Err(e) => {
                        assert_eq!(w["error"].as_str(), Some(e.as_str()), "{name} call {i}");
                        continue;
                    }
                };
                let epochs = call["epochs"].as_u64().unwrap() as u32;
                let r = nb.query(&spec, epochs, call["halfway"].as_bool().unwrap());
                compare(i, call, &r, w);
            }
        }
    }
    let (t, e) = nb.get_budget_counters();
    assert_eq!(
        want.last().unwrap()["budget_counters"],
        json!([t, e]),
        "{name}"
    );
}

#[test]
fn every_store_answers_like_the_original_api() {
    let dir = tempfile::tempdir().unwrap();
    let (db, pq) = sample_sources(dir.path());
    let calls = calls();
    let want = oracle(dir.path(), &calls).unwrap();
    // The oracle itself answered the queries (not only errors).
    assert!(want.iter().filter(|w| w.get("data").is_some()).count() >= 40);
    let mut in_memory = NasBench::in_memory(&db, Some(SEED)).unwrap();
    assert!(in_memory.index().unwrap().built);
    check_store("in memory (built)", &mut in_memory, &calls, &want);
    let mut mapped = NasBench::in_memory(&db, Some(SEED)).unwrap();
    assert!(!mapped.index().unwrap().built, "second open maps the index");
    check_store("in memory (mapped)", &mut mapped, &calls, &want);
    check_store(
        "lazy",
        &mut NasBench::lazy(&db, Some(SEED)).unwrap(),
        &calls,
        &want,
    );
    check_store(
        "lazy parquet",
        &mut NasBench::lazy(&pq, Some(SEED)).unwrap(),
        &calls,
        &want,
    );
    check_store(
        "in memory parquet",
        &mut NasBench::in_memory(&pq, Some(SEED)).unwrap(),
        &calls,
        &want,
    );
    // Straight from the release file, no database: built, then mapped.
    let file = dir.path().join("sample.tfrecord");
    std::fs::copy(
        Path::new(ROOT).join("tests/fixtures/nasbench_real_sample.tfrecord"),
        &file,
    )
    .unwrap();
    let mut from_file = NasBench::in_memory(&file, Some(SEED)).unwrap();
    assert!(from_file.index().unwrap().built);
    check_store("in memory (release file)", &mut from_file, &calls, &want);
    let mut mapped = NasBench::in_memory(&file, Some(SEED)).unwrap();
    assert!(!mapped.index().unwrap().built);
    check_store(
        "in memory (release file, mapped)",
        &mut mapped,
        &calls,
        &want,
    );
}

/// The hashes in the order they first appear in the file, read with the
/// record decoder alone.
fn first_appearance(file: &Path) -> Vec<String> {
    let buf = std::fs::read(file).unwrap();
    let (frames, err) = nasbench::dataset::tfrecord::scan(&buf);
    assert!(err.is_none());
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for f in &frames {
        let r = nasbench::dataset::record::decode(f.check(&buf).unwrap()).unwrap();
        if seen.insert(r.hash.to_string()) {
            out.push(r.hash.to_string());
        }
    }
    out
}

/// `hash_iterator` runs in file order (the original's dict order) from the
/// release file, the database and its Parquet export alike.
#[test]
fn the_hash_iterator_follows_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (db, pq) = sample_sources(dir.path());
    let file = dir.path().join("sample.tfrecord");
    std::fs::copy(
        Path::new(ROOT).join("tests/fixtures/nasbench_real_sample.tfrecord"),
        &file,
    )
    .unwrap();
    let want = first_appearance(&file);
    assert!(want.len() > 1);
    let mut sorted = want.clone();
    sorted.sort();
    assert_ne!(
        sorted, want,
        "the sample is not in hash order, so the test can fail"
    );
    for src in [&file, &db, &pq] {
        let nb = NasBench::in_memory(src, None).unwrap();
        let ix = nb.index().unwrap();
        let got: Vec<String> = ix
            .file_order()
            .unwrap()
            .into_iter()
            .map(|c| ix.hash(c as usize).to_string())
            .collect();
        assert_eq!(got, want, "{}", src.display());
    }
}

/// A damaged release file is an error naming the file and the record.
#[test]
fn a_damaged_release_file_is_an_error_naming_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes =
        std::fs::read(Path::new(ROOT).join("tests/fixtures/nasbench_real_sample.tfrecord"))
            .unwrap();
    let file = dir.path().join("bad.tfrecord");
    let n = bytes.len();
    bytes[n / 2] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let err = NasBench::in_memory(&file, None).unwrap_err().to_string();
    assert!(
        err.contains("bad.tfrecord") && err.contains("record "),
        "{err}"
    );
    std::fs::write(&file, &bytes[..n - 7]).unwrap();
    let err = NasBench::in_memory(&file, None).unwrap_err().to_string();
    assert!(
        err.contains("bad.tfrecord") && err.contains("truncated"),
        "{err}"
    );
    std::fs::write(&file, b"").unwrap();
    let err = NasBench::in_memory(&file, None).unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn metrics_by_hash_and_spec_hold_the_real_values() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = sample_sources(dir.path());
    for mut nb in [
        NasBench::in_memory(&db, Some(1)).unwrap(),
        NasBench::lazy(&db, Some(1)).unwrap(),
    ] {
        assert_eq!(nb.valid_epochs().unwrap(), [4, 12, 36, 108]);
        let mut hashes: Vec<String> = nb.hash_iterator().unwrap().map(|h| h.to_hex()).collect();
        hashes.sort();
        let mut want: Vec<String> = REAL_CELLS.iter().map(|c| c.0.to_string()).collect();
        want.sort();
        assert_eq!(hashes, want);

        let h: ModelHash = REAL_CELLS[0].0.parse().unwrap();
        let m = nb.get_metrics_from_hash(&h).unwrap();
        assert_eq!(m.fixed.trainable_parameters, Some(2694282));
        assert_eq!(m.fixed.module_adjacency().to_bit_string(), REAL_CELLS[0].1);
        assert_eq!(m.fixed.module_operations().join(","), REAL_CELLS[0].2);
        assert_eq!(
            m.computed.keys().copied().collect::<Vec<_>>(),
            [4, 12, 36, 108]
        );
        assert!(m.computed.values().all(|runs| runs.len() == 3));
        // SPEC.md: one 108-epoch repeat of this cell (real values).
        assert!(m.computed[&108].iter().any(|r| {
            r.last.training_time == Some(1155.85302734375)
                && r.last.validation_accuracy == Some(0.9376001358032227)
                && r.last.test_accuracy == Some(0.9311898946762085)
        }));
        let (rm, ro) = readme_form();
        let spec = ModelSpec::new(&rm, ro.iter().map(|s| s.to_string()).collect()).unwrap();
        assert_eq!(nb.get_metrics_from_spec(&spec).unwrap(), m);
        assert_eq!(nb.get_budget_counters(), (0.0, 0), "metrics do not count");

        let unknown: ModelHash = "0123456789abcdef0123456789abcdef".parse().unwrap();
        assert!(matches!(
            nb.get_metrics_from_hash(&unknown),
            Err(ApiError::UnknownHash(u)) if u == unknown
        ));
        let err = nb.query_hash(&h, 200, false).unwrap_err();
        // Python 3.11 prints the set filled in file order (4, 12, 36, 108) so.
        assert_eq!(
            err.to_string(),
            "invalid number of epochs, must be one of {108, 4, 12, 36}"
        );
    }
}

#[test]
fn same_seed_same_draws_other_seed_other_draws() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = sample_sources(dir.path());
    let h: ModelHash = REAL_CELLS[0].0.parse().unwrap();
    let draws = |seed| {
        let mut nb = NasBench::in_memory(&db, Some(seed)).unwrap();
        (0..64)
            .map(|_| nb.query_hash(&h, 108, false).unwrap().repeat)
            .collect::<Vec<_>>()
    };
    assert_eq!(draws(5), draws(5));
    assert_ne!(draws(5), draws(6));
    let d = draws(5);
    for r in 0..3 {
        assert!(d.contains(&r), "repeat {r} never drawn in {d:?}");
    }
}

#[test]
fn a_changed_source_rebuilds_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = sample_sources(dir.path());
    assert!(
        NasBench::in_memory(&db, None)
            .unwrap()
            .index()
            .unwrap()
            .built
    );
    assert!(
        !NasBench::in_memory(&db, None)
            .unwrap()
            .index()
            .unwrap()
            .built
    );
    // A different database under the same name (here: the same data with
    // one more budget row removed) must not be answered from the old index.
    {
        let conn = duckdb::Connection::open(&db).unwrap();
        conn.execute_batch("DELETE FROM evaluations WHERE epochs = 4; CHECKPOINT;")
            .unwrap();
    }
    let mut nb = NasBench::in_memory(&db, None).unwrap();
    assert!(nb.index().unwrap().built);
    assert_eq!(nb.valid_epochs().unwrap(), [12, 36, 108]);
    // A corrupt index file is rebuilt, not trusted.
    let mut idx = db.as_os_str().to_owned();
    idx.push(".qidx");
    let mut bytes = std::fs::read(&idx).unwrap();
    bytes.truncate(bytes.len() - 8);
    std::fs::write(&idx, bytes).unwrap();
    assert!(
        NasBench::in_memory(&db, None)
            .unwrap()
            .index()
            .unwrap()
            .built
    );
}

#[test]
fn missing_sources_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = NasBench::lazy(&dir.path().join("nope.duckdb"), None).unwrap_err();
    assert!(e.to_string().contains("nope.duckdb"), "{e}");
    let e = NasBench::in_memory(dir.path(), None).unwrap_err();
    assert!(e.to_string().contains("models.parquet"), "{e}");
}

#[test]
fn a_pipelined_batch_answers_like_one_call_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = sample_sources(dir.path());
    let unknown: ModelHash = "0123456789abcdef0123456789abcdef".parse().unwrap();
    let mut hashes: Vec<ModelHash> = Vec::new();
    for k in 0..300 {
        // Every real cell, an unknown hash now and then, in a long enough
        // run that the prefetch distance is crossed many times.
        hashes.push(if k % 7 == 3 {
            unknown
        } else {
            REAL_CELLS[k % REAL_CELLS.len()].0.parse().unwrap()
        });
    }
    type Open = fn(&Path, Option<u64>) -> Result<NasBench, ApiError>;
    for (store, open) in [
        ("in memory", NasBench::in_memory as Open),
        ("lazy", NasBench::lazy as Open),
    ] {
        for epochs in [4, 12, 36, 108, 200] {
            for halfway in [false, true] {
                // Lazy lookups are DuckDB queries: fewer of them.
                let hashes = &hashes[..if store == "lazy" { 30 } else { hashes.len() }];
                let mut one = open(&db, Some(9)).unwrap();
                let mut batch = open(&db, Some(9)).unwrap();
                let singles: Vec<String> = hashes
                    .iter()
                    .map(|h| format!("{:?}", one.query_hash(h, epochs, halfway)))
                    .collect();
                let batched: Vec<String> = batch
                    .query_hashes(hashes, epochs, halfway)
                    .iter()
                    .map(|r| format!("{r:?}"))
                    .collect();
                assert_eq!(
                    batched, singles,
                    "{store}, {epochs} epochs, halfway {halfway}"
                );
                assert_eq!(batch.get_budget_counters(), one.get_budget_counters());
                if epochs != 200 {
                    assert!(
                        batched.iter().any(|r| r.starts_with("Ok")),
                        "{store} {epochs}"
                    );
                }
            }
        }
    }
}

#[test]
fn every_cell_is_found_by_its_canonical_key_and_no_other_key_finds_one() {
    use nasbench::api::Index;
    use nasbench::cell::generate::canonical_key;
    use std::collections::HashMap;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.tfrecord");
    common::run(
        Command::new(env!("CARGO_BIN_EXE_nasbench"))
            .args(["synth", "-q", "--cells", "3000", "-o"])
            .arg(&file),
    );
    let ix = Index::build_from_release(&file, vec![], None).unwrap();
    assert_eq!(ix.len(), 3000);
    let graphs: Vec<_> = (0..ix.len()).map(|i| ix.fixed(i).graph).collect();
    let present: HashMap<u64, usize> = graphs
        .iter()
        .enumerate()
        .map(|(i, g)| (canonical_key(g), i))
        .collect();
    assert_eq!(present.len(), 3000, "the cells are distinct");
    for (&key, &cell) in &present {
        assert_eq!(ix.find_key(key).unwrap(), Some(cell));
    }
    // Neighbours of the cells (one interior op changed, or one edge added
    // or removed): found exactly when the index holds them, and then as
    // that cell.
    let (mut held, mut absent) = (0, 0);
    for g in &graphs {
        let n = usize::from(g.n);
        let mut neighbours = Vec::new();
        for v in 1..n - 1 {
            let mut h = *g;
            h.labels[v] = (h.labels[v] + 1) % 3;
            neighbours.push(h);
        }
        for i in 0..n {
            for j in i + 1..n {
                let mut h = *g;
                h.rows[i] ^= 1 << j;
                neighbours.push(h);
            }
        }
        for h in neighbours {
            let key = canonical_key(&h);
            let want = present.get(&key).copied();
            assert_eq!(ix.find_key(key).unwrap(), want);
            if want.is_some() {
                held += 1;
            } else {
                absent += 1;
            }
        }
    }
    assert!(held > 1000 && absent > 1000, "held {held}, absent {absent}");
}
