//! The query index under corruption: 10,000 files with flipped, overwritten, truncated or appended bytes are refused, or answer every call with the intact file's values, or fail with an error naming the file; never a wrong answer, never a panic.

use crate::common;

use std::io::Write;
use std::process::Command;

use common::run;
use nasbench::api::{
    ApiError, CellMetrics, Index, NasBench, QueryResult, SplitMix64, index_location,
};
use nasbench::cell::graph::ModelHash;
use nasbench::cell::spec::ModelSpec;

const BIN: &str = env!("CARGO_BIN_EXE_nasbench");
const CASES: usize = 10_000;

/// What the intact index knows: every cell's metrics (or the error for a
/// hash it lacks), the budgets, the hash list, and each spec's answer.
struct Truth {
    epochs: Vec<u32>,
    cells: Vec<Result<CellMetrics, String>>,
    hashes: Vec<ModelHash>,
    specs: Vec<Result<CellMetrics, String>>,
}

fn truth(nb: &mut NasBench, hashes: &[ModelHash], specs: &[ModelSpec]) -> Truth {
    Truth {
        epochs: nb.valid_epochs().unwrap(),
        cells: hashes
            .iter()
            .map(|h| nb.get_metrics_from_hash(h).map_err(|e| e.to_string()))
            .collect(),
        hashes: nb.hash_iterator().unwrap().collect(),
        specs: specs
            .iter()
            .map(|s| nb.get_metrics_from_spec(s).map_err(|e| e.to_string()))
            .collect(),
    }
}

/// An error from a corrupt file: it must be the index kind, naming the file.
fn index_error(e: &ApiError) -> Result<(), String> {
    match e {
        ApiError::Index { path, .. } if path.ends_with(".qidx") => Ok(()),
        other => Err(format!("unexpected error {other}")),
    }
}

/// A query's answer against the truth about its cell: the cell as stored,
/// and the point of the run it says it drew. Draws are not compared (a
/// query that fails on a corrupt cell draws nothing, so later draws shift).
fn check_query(
    got: Result<QueryResult, ApiError>,
    want: &Result<CellMetrics, String>,
    epochs: u32,
    halfway: bool,
    valid: &[u32],
) -> Result<(), String> {
    match (got, want) {
        (Ok(q), Ok(cell)) => {
            let runs = cell
                .computed
                .get(&epochs)
                .ok_or("answered a budget the cell lacks")?;
            let run = runs
                .get(q.repeat)
                .ok_or("answered a repeat the cell lacks")?;
            let point = if halfway { run.halfway } else { run.last };
            if q.fixed != cell.fixed
                || q.point != point
                || q.epochs != epochs
                || q.stop_halfway != halfway
            {
                return Err(format!("wrong answer {q:?}"));
            }
            Ok(())
        }
        (Ok(q), Err(e)) => Err(format!("answered {q:?} where the intact index says {e}")),
        (Err(e @ ApiError::Index { .. }), _) => index_error(&e),
        (Err(e), want) => {
            // Errors the intact index gives for the same call: a budget
            // the data lacks, or a cell it lacks.
            let expected = if !valid.contains(&epochs) {
                ApiError::InvalidEpochs {
                    epochs,
                    valid: vec![],
                }
                .to_string()
                .split(',')
                .next()
                .unwrap_or_default()
                .to_string()
            } else {
                want.as_ref()
                    .err()
                    .cloned()
                    .unwrap_or_else(|| "no error".into())
            };
            if e.to_string().starts_with(&expected) {
                Ok(())
            } else {
                Err(format!("error {e}, expected {expected}"))
            }
        }
    }
}

/// Runs a search loop's calls on `nb` and checks each answer against the
/// truth; the first wrong one is the error.
fn check(
    nb: &mut NasBench,
    t: &Truth,
    hashes: &[ModelHash],
    specs: &[ModelSpec],
) -> Result<(), String> {
    match nb.valid_epochs() {
        Ok(e) if e == t.epochs => {}
        Ok(e) => return Err(format!("budgets {e:?}")),
        Err(e) => index_error(&e)?,
    }
    match nb.hash_iterator().map(|it| it.collect::<Vec<_>>()) {
        Ok(h) if h == t.hashes => {}
        Ok(_) => return Err("a different hash list".into()),
        Err(e) => index_error(&e)?,
    }
    for epochs in [4, 12, 36, 108, 7] {
        for (k, h) in hashes.iter().enumerate() {
            let halfway = k % 2 == 0;
            check_query(
                nb.query_hash(h, epochs, halfway),
                &t.cells[k],
                epochs,
                halfway,
                &t.epochs,
            )
            .map_err(|e| format!("query_hash {h} at {epochs}: {e}"))?;
        }
        for (k, r) in nb
            .query_hashes(hashes, epochs, false)
            .into_iter()
            .enumerate()
        {
            check_query(r, &t.cells[k], epochs, false, &t.epochs)
                .map_err(|e| format!("query_hashes item {k} at {epochs}: {e}"))?;
        }
        for (k, s) in specs.iter().enumerate() {
            check_query(
                nb.query(s, epochs, false),
                &t.specs[k],
                epochs,
                false,
                &t.epochs,
            )
            .map_err(|e| format!("query of spec {k} at {epochs}: {e}"))?;
        }
    }
    for (k, h) in hashes.iter().enumerate() {
        match (nb.get_metrics_from_hash(h), &t.cells[k]) {
            (Ok(m), Ok(w)) if m == *w => {}
            (Err(e @ ApiError::Index { .. }), _) => index_error(&e)?,
            (Err(e), Err(w)) if e.to_string() == *w => {}
            (got, want) => return Err(format!("metrics of {h}: {got:?}, expected {want:?}")),
        }
    }
    for (k, s) in specs.iter().enumerate() {
        match (nb.get_metrics_from_spec(s), &t.specs[k]) {
            (Ok(m), Ok(w)) if m == *w => {}
            (Err(e @ ApiError::Index { .. }), _) => index_error(&e)?,
            (got, want) => return Err(format!("metrics of spec {k}: {got:?}, expected {want:?}")),
        }
    }
    Ok(())
}

#[test]
fn corrupt_indexes_are_refused_or_answer_as_the_intact_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.tfrecord");
    run(Command::new(BIN)
        .args(["synth", "-q", "--full", "--cells", "40", "-o"])
        .arg(&file));
    let db = dir.path().join("s.duckdb");
    run(Command::new(BIN)
        .args(["ingest", "-q"])
        .arg(&file)
        .arg("--db")
        .arg(&db));
    let (source, idx) = index_location(&db).unwrap();
    let pristine = std::fs::read(&idx).unwrap();
    let ix = Index::open_fresh(&idx, &source)
        .unwrap()
        .expect("fresh index");
    let mut hashes: Vec<ModelHash> = (0..ix.len()).map(|i| ix.hash(i)).collect();
    assert_eq!(hashes.len(), 40);
    let specs: Vec<ModelSpec> = (0..ix.len())
        .step_by(4)
        .map(|i| {
            let f = ix.fixed(i);
            let ops = f
                .module_operations()
                .iter()
                .map(|s| s.to_string())
                .collect();
            ModelSpec::from_matrix(f.module_adjacency(), ops).unwrap()
        })
        .collect();
    // Hashes the data lacks (neighbours of real ones), so that a corrupt
    // bucket or hash cannot turn "not there" into an answer either.
    for k in 0..8 {
        let mut h = hashes[k * 5];
        h.0[15] ^= 1;
        hashes.push(h);
    }
    let mut intact = NasBench::from_index(ix, Some(7));
    let want = truth(&mut intact, &hashes, &specs);
    assert_eq!(want.cells.iter().filter(|c| c.is_ok()).count(), 40);
    // The checks can fail: the intact index passes them, and a wrong
    // answer does not.
    check(&mut intact, &want, &hashes, &specs).unwrap();
    let mut lying = Truth {
        epochs: want.epochs.clone(),
        cells: want.cells.clone(),
        hashes: want.hashes.clone(),
        specs: want.specs.clone(),
    };
    if let Ok(c) = &mut lying.cells[3] {
        c.computed.get_mut(&108).unwrap()[0].last.test_accuracy = Some(0.5);
        c.computed.get_mut(&108).unwrap()[1].last.test_accuracy = Some(0.5);
        c.computed.get_mut(&108).unwrap()[2].last.test_accuracy = Some(0.5);
    }
    assert!(check(&mut intact, &lying, &hashes, &specs).is_err());

    let mut rng = SplitMix64::new(2026);
    let (mut refused, mut errors, mut answered) = (0usize, 0usize, 0usize);
    for case in 0..CASES {
        let mut bytes = pristine.clone();
        let len = bytes.len() as u64;
        let what = match rng.below(5) {
            0 => {
                let at = rng.below(len) as usize;
                bytes[at] ^= 1 << rng.below(8);
                format!("bit flip at {at}")
            }
            1 => {
                let n = 2 + rng.below(7);
                for _ in 0..n {
                    let at = rng.below(len) as usize;
                    bytes[at] = rng.below(256) as u8;
                }
                format!("{n} random bytes")
            }
            2 => {
                let at = rng.below(len) as usize;
                bytes.truncate(at);
                format!("truncated to {at}")
            }
            3 => {
                let n = 1 + rng.below(1000) as usize;
                bytes.extend((0..n).map(|_| rng.below(256) as u8));
                format!("{n} bytes appended")
            }
            _ => {
                let at = rng.below(len) as usize;
                let n = (1 + rng.below(64) as usize).min(bytes.len() - at);
                bytes[at..at + n].fill(0);
                format!("{n} zero bytes at {at}")
            }
        };
        if bytes == pristine {
            continue;
        }
        std::fs::write(&idx, &bytes).unwrap();
        match Index::open_fresh(&idx, &source) {
            Ok(None) => refused += 1,
            Err(e) => {
                assert!(
                    e.to_string().contains("s.duckdb.qidx"),
                    "case {case} ({what}): {e}"
                );
                errors += 1;
            }
            Ok(Some(ix)) => {
                let mut nb = NasBench::from_index(ix, Some(7));
                if let Err(e) = check(&mut nb, &want, &hashes, &specs) {
                    panic!("case {case} ({what}): {e}");
                }
                answered += 1;
            }
        }
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "index fuzz: {CASES} cases: {refused} refused at open, {errors} open errors, \
         {answered} opened (every answer checked against the intact index's cells, or an error naming the file)"
    );
    // Both layers of checks are exercised: the header, bucket and key
    // checksums at open, and the per-cell checksums in the lookups.
    assert!(refused > CASES / 4, "corruptions caught at open: {refused}");
    assert!(
        answered > CASES / 4,
        "corruptions left to the lookups: {answered}"
    );
    // A header the open refuses is rebuilt by the API, which then answers
    // as before.
    let mut bad = pristine.clone();
    bad[40] ^= 0x01;
    std::fs::write(&idx, &bad).unwrap();
    assert!(Index::open_fresh(&idx, &source).unwrap().is_none());
    let mut nb = NasBench::in_memory(&db, Some(7)).unwrap();
    assert!(nb.index().unwrap().built);
    check(&mut nb, &want, &hashes, &specs).unwrap();
    assert_eq!(
        std::fs::read(&idx).unwrap(),
        pristine,
        "the rebuilt file is the same"
    );
}
