//! Bounded fuzzing as tests: mutated TFRecord files and records, matrix and op text, CIFAR binary and pickle files, and SQL function arguments never panic, and errors say where; each test prints its case count.

use std::io::Write;

use nasbench::api::SplitMix64;
use nasbench::cell::parse::{parse_matrix, parse_ops};
use nasbench::dataset::record::decode;
use nasbench::dataset::tfrecord::scan;
use nasbench::train::data;

const SAMPLE: &[u8] = include_bytes!("fixtures/nasbench_real_sample.tfrecord");

/// Prints a line past the harness's capture.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// One random mutation of `bytes`: bit flips, random bytes, a truncation,
/// appended junk, a zeroed range, or a copied range.
fn mutate(bytes: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let len = b.len().max(1) as u64;
    match rng.below(6) {
        0 => {
            for _ in 0..=rng.below(3) {
                let at = rng.below(len) as usize % b.len().max(1);
                if let Some(x) = b.get_mut(at) {
                    *x ^= 1 << rng.below(8);
                }
            }
        }
        1 => {
            for _ in 0..=rng.below(8) {
                let at = rng.below(len) as usize % b.len().max(1);
                if let Some(x) = b.get_mut(at) {
                    *x = rng.below(256) as u8;
                }
            }
        }
        2 => b.truncate(rng.below(len) as usize),
        3 => b.extend((0..1 + rng.below(300)).map(|_| rng.below(256) as u8)),
        4 => {
            let at = rng.below(len) as usize;
            let n = (1 + rng.below(32) as usize).min(b.len().saturating_sub(at));
            b[at..at + n].fill(if rng.below(2) == 0 { 0 } else { 0xff });
        }
        _ => {
            let (from, to) = (rng.below(len) as usize, rng.below(len) as usize);
            let n = (1 + rng.below(64) as usize)
                .min(b.len().saturating_sub(from))
                .min(b.len().saturating_sub(to));
            let chunk = b[from..from + n].to_vec();
            b[to..to + n].copy_from_slice(&chunk);
        }
    }
    b
}

#[test]
fn mutated_tfrecord_files_frame_and_decode_without_panics() {
    const CASES: usize = 20_000;
    let mut rng = SplitMix64::new(101);
    let (pristine, err) = scan(SAMPLE);
    assert!(err.is_none());
    let mut decoded = 0usize;
    let mut framing_errors = 0usize;
    for case in 0..CASES {
        let buf = mutate(SAMPLE, &mut rng);
        let (frames, err) = scan(&buf);
        if let Some(e) = &err {
            framing_errors += 1;
            assert!(
                e.offset() <= buf.len() as u64,
                "case {case}: offset past the end: {e}"
            );
        }
        for f in &frames {
            assert!(f.end() <= buf.len() as u64, "case {case}");
            let Ok(data) = f.check(&buf) else { continue };
            if let Ok(r) = decode(data) {
                decoded += 1;
                // A frame that checks is a record of the original file
                // (both CRCs pass): it decodes to that record's values.
                let same = pristine
                    .iter()
                    .find(|p| p.data(SAMPLE) == data)
                    .map(|p| decode(p.data(SAMPLE)).unwrap());
                if let Some(want) = same {
                    assert_eq!(r.hash, want.hash, "case {case}");
                    assert_eq!(r.metrics, want.metrics, "case {case}");
                }
            }
        }
    }
    say(&format!(
        "tfrecord fuzz: {CASES} cases, {framing_errors} framing errors, {decoded} records decoded"
    ));
}

#[test]
fn mutated_record_payloads_decode_or_fail_cleanly() {
    const CASES: usize = 20_000;
    let mut rng = SplitMix64::new(7);
    let (frames, _) = scan(SAMPLE);
    let payloads: Vec<&[u8]> = frames.iter().map(|f| f.data(SAMPLE)).collect();
    let (mut ok, mut bad) = (0usize, 0usize);
    for _ in 0..CASES {
        let p = payloads[rng.below(payloads.len() as u64) as usize];
        let m = mutate(p, &mut rng);
        match decode(&m) {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                bad += 1;
            }
        }
    }
    say(&format!(
        "record fuzz: {CASES} payloads, {ok} decoded, {bad} refused"
    ));
}

#[test]
fn random_matrix_and_op_text_parses_or_fails_cleanly() {
    const CASES: usize = 50_000;
    let mut rng = SplitMix64::new(3);
    let pieces = [
        "0",
        "1",
        "2",
        "-1",
        "-2",
        " ",
        ",",
        "[",
        "]",
        "[[",
        "]]",
        "\n",
        "input",
        "output",
        "conv3x3-bn-relu",
        "conv1x1-bn-relu",
        "maxpool3x3",
        "identity",
        "x",
        "\"",
        "1e9",
        "99999999999999999999",
        "",
        "\t",
        "0110",
    ];
    let (mut matrices, mut ops) = (0usize, 0usize);
    for _ in 0..CASES {
        let n = rng.below(24) as usize;
        let text: String = (0..n)
            .map(|_| pieces[rng.below(pieces.len() as u64) as usize])
            .collect();
        let json = text.trim().starts_with('[');
        if let Ok(m) = parse_matrix(&text) {
            matrices += 1;
            if json {
                // A JSON list of rows reads back from its own JSON.
                let again = serde_json::to_string(&m).unwrap();
                assert_eq!(parse_matrix(&again).ok(), Some(m), "{text:?}");
            } else {
                // A bit string is a square 0/1 matrix, the same written back.
                let k = m.len();
                assert!(m.iter().all(|r| r.len() == k), "{text:?} -> {m:?}");
                assert!(m.iter().flatten().all(|&v| v == 0 || v == 1), "{text:?}");
                let bits: String = m.iter().flatten().map(|v| v.to_string()).collect();
                assert_eq!(parse_matrix(&bits).ok(), Some(m), "{text:?}");
            }
        }
        if let Ok(o) = parse_ops(&text) {
            ops += 1;
            assert!(o.iter().all(|op| !op.is_empty()), "{text:?}");
            if !json {
                assert_eq!(parse_ops(&o.join(",")).ok(), Some(o), "{text:?}");
            }
        }
    }
    say(&format!(
        "parser fuzz: {CASES} texts, {matrices} parsed as matrices, {ops} as op lists"
    ));
}

#[test]
fn mutated_cifar_files_load_or_fail_naming_the_file() {
    const CASES: usize = 1_500;
    let dir = tempfile::tempdir().unwrap();
    let bin = data::write_synthetic(dir.path(), 8, 4, 1).unwrap();
    let batch = bin.join("data_batch_1.bin");
    let pristine = std::fs::read(&batch).unwrap();
    // The Python release of the same images, as serde-pickle writes a dict
    // of `data` bytes and `labels`.
    let py = dir.path().join("py").join("cifar-10-batches-py");
    std::fs::create_dir_all(&py).unwrap();
    for name in [
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ] {
        let from = std::fs::read(bin.join(format!("{name}.bin"))).unwrap();
        let (mut labels, mut images) = (Vec::new(), Vec::new());
        for r in from.chunks(1 + 3 * 4 * 4) {
            labels.push(serde_pickle::Value::I64(i64::from(r[0])));
            images.extend_from_slice(&r[1..]);
        }
        let dict = serde_pickle::Value::Dict(
            [
                (
                    serde_pickle::HashableValue::Bytes(b"labels".to_vec()),
                    serde_pickle::Value::List(labels),
                ),
                (
                    serde_pickle::HashableValue::Bytes(b"data".to_vec()),
                    serde_pickle::Value::Bytes(images),
                ),
            ]
            .into_iter()
            .collect(),
        );
        let bytes = serde_pickle::value_to_vec(&dict, serde_pickle::SerOptions::new()).unwrap();
        std::fs::write(py.join(name), bytes).unwrap();
    }
    let want = data::load(dir.path(), 4).unwrap();
    let from_py = data::load(&dir.path().join("py"), 4);
    let pickled = std::fs::read(py.join("data_batch_1")).unwrap();
    let mut rng = SplitMix64::new(11);
    let (mut loaded, mut refused) = (0usize, 0usize);
    for case in 0..CASES {
        let (path, root, original) = if case % 2 == 0 || from_py.is_err() {
            (&batch, dir.path().to_path_buf(), &pristine)
        } else {
            (&py.join("data_batch_1"), dir.path().join("py"), &pickled)
        };
        std::fs::write(path, mutate(original, &mut rng)).unwrap();
        match data::load_classes(&root, 4, 10) {
            Ok(c) => {
                loaded += 1;
                assert_eq!(c.test.len(), want.test.len(), "case {case}");
            }
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("data_batch_1"), "case {case}: {e}");
                refused += 1;
            }
        }
        std::fs::write(path, original).unwrap();
    }
    say(&format!(
        "CIFAR fuzz: {CASES} mutated files (binary and pickle{}), {loaded} loaded, {refused} refused naming the file",
        if from_py.is_ok() {
            ""
        } else {
            ": pickle skipped, it did not load"
        }
    ));
    assert!(
        from_py.is_ok(),
        "the pickled release loads: {:?}",
        from_py.err()
    );
    assert_eq!(from_py.unwrap().train.labels, want.train.labels);
}

/// What one SQL call gave: its answer as text, or its error message.
fn sql_outcome(r: duckdb::Result<Option<String>>, sql: &str) -> Result<Option<String>, String> {
    r.map_err(|e| {
        let e = e.to_string();
        assert!(!e.contains("panicked"), "{sql}: {e}");
        assert!(e.contains("argument") || e.contains("Error"), "{sql}: {e}");
        e
    })
}

#[test]
fn random_sql_function_arguments_answer_or_fail_as_sql_errors() {
    const CASES: usize = 400;
    // Every case calls each function through a prepared statement, its
    // arguments bound as parameters: DuckDB, built at -O0 for the tests,
    // takes milliseconds to parse a statement, so each is parsed once.
    // Every LITERAL_EVERY-th case also spells its arguments out as SQL
    // literals, the path of constant folding, and must answer exactly as
    // the parameters did.
    const LITERAL_EVERY: usize = 8;
    const FUNCTIONS: [&str; 5] = [
        "nasbench_hash",
        "prune",
        "nasbench_is_valid",
        "nasbench_check",
        "nasbench_params",
    ];
    // The argument forms: nested matrix and op list, bit text and op text,
    // the two mixed, and a NULL matrix. The parameters are VARCHAR, the
    // type of the bound values (another type would make DuckDB bind and
    // plan again at every call), cast to the argument's type inside.
    const FORMS: [(&str, &str); 5] = [
        ("$1::VARCHAR::BIGINT[][]", "$2::VARCHAR::VARCHAR[]"),
        ("$1::VARCHAR", "$2::VARCHAR"),
        ("$1::VARCHAR::BIGINT[][]", "$2::VARCHAR"),
        ("$1::VARCHAR", "$2::VARCHAR::VARCHAR[]"),
        ("NULL", "$1::VARCHAR::VARCHAR[]"),
    ];
    let c = nasbench::db::open(std::path::Path::new(":memory:")).unwrap();
    let mut prepared = Vec::new();
    for f in FUNCTIONS {
        for (a, b) in FORMS {
            let sql = format!("SELECT ({f}({a}, {b}))::VARCHAR");
            let stmt = c.prepare(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            prepared.push((sql, stmt));
        }
    }
    let mut rng = SplitMix64::new(5);
    let words = [
        "input",
        "output",
        "conv3x3-bn-relu",
        "maxpool3x3",
        "conv1x1-bn-relu",
        "zz",
        "",
    ];
    let (mut calls, mut literal_calls) = (0usize, 0usize);
    for case in 0..CASES {
        let n = rng.below(9) as usize;
        let rows: Vec<String> = (0..n)
            .map(|_| {
                let k = if rng.below(5) == 0 {
                    rng.below(9) as usize
                } else {
                    n
                };
                let vals: Vec<String> = (0..k)
                    .map(|_| (rng.below(5) as i64 - 2).to_string())
                    .collect();
                format!("[{}]", vals.join(","))
            })
            .collect();
        let m = format!("[{}]", rows.join(","));
        let k = if rng.below(4) == 0 {
            rng.below(9) as usize
        } else {
            n
        };
        let names: Vec<String> = (0..k)
            .map(|_| format!("'{}'", words[rng.below(words.len() as u64) as usize]))
            .collect();
        let o = format!("[{}]", names.join(","));
        let t: String = (0..rng.below(60))
            .map(|_| ['0', '1', ' ', ','][rng.below(4) as usize])
            .collect();
        let ot = names.join(",").replace('\'', "");
        // The values of $1 and $2 in each form, and the same as literals.
        let values = [(&m, &o), (&t, &ot), (&m, &ot), (&t, &o), (&m, &o)];
        let m_lit = if n == 0 {
            "[]::BIGINT[][]".to_string()
        } else {
            m.clone()
        };
        let (t_lit, ot_lit) = (format!("'{t}'"), format!("'{ot}'"));
        let o_lit = format!("{o}::VARCHAR[]");
        let null = "NULL".to_string();
        let literals = [
            (&m_lit, &o_lit),
            (&t_lit, &ot_lit),
            (&m_lit, &ot_lit),
            (&t_lit, &o_lit),
            (&null, &o_lit),
        ];
        for (i, (sql, stmt)) in prepared.iter_mut().enumerate() {
            let form = i % FORMS.len();
            let (a, b) = values[form];
            // The NULL form's statement has one parameter, the op list.
            let bound: &[&String] = if FORMS[form].0 == "NULL" {
                &[b]
            } else {
                &[a, b]
            };
            let got = sql_outcome(
                stmt.query_row(duckdb::params_from_iter(bound), |r| {
                    r.get::<_, Option<String>>(0)
                }),
                &format!("{sql} with {bound:?}"),
            );
            calls += 1;
            if case % LITERAL_EVERY == 0 {
                let (a, b) = literals[form];
                let f = FUNCTIONS[i / FORMS.len()];
                let lit = format!("SELECT ({f}({a}, {b}))::VARCHAR");
                let want = sql_outcome(
                    c.query_row(&lit, [], |r| r.get::<_, Option<String>>(0)),
                    &lit,
                );
                literal_calls += 1;
                assert_eq!(
                    got.as_ref().ok(),
                    want.as_ref().ok(),
                    "{sql} with $1 = {a}, $2 = {b} answers as {lit}"
                );
            }
        }
    }
    say(&format!(
        "SQL function fuzz: {CASES} cases, {calls} calls with parameters, \
         {literal_calls} of them also with literals"
    ));
}
