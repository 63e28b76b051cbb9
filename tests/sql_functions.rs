//! The nasbench scalar functions inside DuckDB: hash parity with the reference sample in every argument form, the original's pruning cases, validity, parameters, NULLs, errors, and random input.

use crate::common;

use duckdb::Connection;
use nasbench::db::open;
use proptest::prelude::*;

fn conn() -> Connection {
    open(std::path::Path::new(":memory:")).unwrap()
}

fn one<T: duckdb::types::FromSql>(c: &Connection, sql: &str) -> T {
    c.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn error(c: &Connection, sql: &str) -> String {
    match c.query_row(sql, [], |r| r.get::<_, Option<String>>(0)) {
        Ok(v) => panic!("{sql} should fail, gave {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn nested(bits: &str, n: usize) -> String {
    let rows: Vec<String> = bits
        .as_bytes()
        .chunks(n)
        .map(|r| {
            let v: Vec<String> = r.iter().map(|b| (b - b'0').to_string()).collect();
            format!("[{}]", v.join(","))
        })
        .collect();
    format!("[{}]", rows.join(","))
}

fn op_names(labels: &[i64]) -> String {
    let names: Vec<String> = labels
        .iter()
        .map(|&l| format!("'{}'", nasbench::cell::ops::label_name(l).unwrap()))
        .collect();
    format!("[{}]", names.join(","))
}

#[test]
fn hash_parity_with_the_reference_sample_in_every_form() {
    let c = conn();
    // The rows go in through the appender as text and are cast to lists in
    // SQL: one INSERT of 2,000 nested-list literals takes DuckDB's parser
    // (built at -O0 for the tests) most of this test's time.
    c.execute_batch(
        "CREATE TABLE ref_text (hash VARCHAR, bits VARCHAR, labels VARCHAR, matrix VARCHAR, ops VARCHAR)",
    )
    .unwrap();
    let rows = common::sample_rows();
    {
        let mut app = c.appender("ref_text").unwrap();
        for r in &rows {
            let labels: Vec<String> = r.labels.iter().map(|l| l.to_string()).collect();
            app.append_row(duckdb::params![
                r.hash,
                r.bits,
                labels.join(","),
                nested(&r.bits, r.vertices),
                op_names(&r.labels)
            ])
            .unwrap();
        }
    }
    c.execute_batch(
        "CREATE TABLE ref AS SELECT hash, bits, labels, matrix::INTEGER[][] AS matrix, \
         ops::VARCHAR[] AS ops FROM ref_text",
    )
    .unwrap();
    assert_eq!(one::<i64>(&c, "SELECT count(*) FROM ref"), 2000);
    for (form, call) in [
        ("INTEGER[][], VARCHAR[]", "nasbench_hash(matrix, ops)"),
        (
            "BIGINT[][], VARCHAR[]",
            "nasbench_hash(matrix::BIGINT[][], ops)",
        ),
        ("bits, labels", "nasbench_hash(bits, labels)"),
        (
            "bits, names",
            "nasbench_hash(bits, array_to_string(ops, ','))",
        ),
        ("nested list, labels", "nasbench_hash(matrix, labels)"),
    ] {
        let wrong: i64 = one(
            &c,
            &format!("SELECT count(*) FROM ref WHERE {call} IS DISTINCT FROM hash"),
        );
        assert_eq!(wrong, 0, "{form}");
    }
    // Every reference cell is valid and its stored form is already pruned.
    let n: i64 = one(
        &c,
        "SELECT count(*) FROM ref WHERE nasbench_is_valid(matrix, ops)
           AND nasbench_check(matrix, ops) IS NULL
           AND prune(matrix, ops).matrix = matrix AND prune(matrix, ops).ops = ops",
    );
    assert_eq!(n, 2000);
}

#[test]
fn prune_as_the_original() {
    let c = conn();
    let cases = [
        // (matrix, ops, pruned matrix, pruned ops) from model_spec_test.py
        (
            "[[0,1,0,0],[0,0,0,1],[0,0,0,0],[0,0,0,0]]",
            "['1','2','3','4']",
            "[[0, 1, 0], [0, 0, 1], [0, 0, 0]]",
            "[1, 2, 4]",
        ),
        (
            "[[0,1,0,0,0],[0,0,0,0,1],[0,0,0,1,0],[0,0,0,0,0],[0,0,0,0,0]]",
            "['1','2','3','4','5']",
            "[[0, 1, 0], [0, 0, 1], [0, 0, 0]]",
            "[1, 2, 5]",
        ),
        (
            "[[0,1,1,0],[0,0,0,0],[0,0,0,1],[0,0,0,0]]",
            "['1','2','3','4']",
            "[[0, 1, 0], [0, 0, 1], [0, 0, 0]]",
            "[1, 3, 4]",
        ),
        (
            "[[0,1,1,0],[0,0,0,1],[0,0,0,1],[0,0,0,0]]",
            "['1','2','3','4']",
            "[[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]",
            "[1, 2, 3, 4]",
        ),
    ];
    for (m, o, pm, po) in cases {
        let (got_m, got_o): (String, String) = c
            .query_row(
                &format!("SELECT prune({m}, {o}).matrix::VARCHAR, prune({m}, {o}).ops::VARCHAR"),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((got_m.as_str(), got_o.as_str()), (pm, po), "{m}");
    }
    // Disconnected: NULL from prune and hash, the original's message from check.
    let m = "[[0,1,0,0],[0,0,0,0],[0,0,0,1],[0,0,0,0]]";
    let o = "['input','conv3x3-bn-relu','maxpool3x3','output']";
    let (p, h, v, chk): (Option<String>, Option<String>, bool, String) = c
        .query_row(
            &format!(
                "SELECT prune({m}, {o})::VARCHAR, nasbench_hash({m}, {o}), nasbench_is_valid({m}, {o}), nasbench_check({m}, {o})"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((p, h, v), (None, None, false));
    assert_eq!(chk, "invalid spec, provided graph is disconnected.");
}

#[test]
fn the_readme_cell_and_domain_messages() {
    let c = conn();
    let bits = "'0111010000000100000010000100000000100000010000000'";
    let ops =
        "'input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output'";
    let h: String = one(&c, &format!("SELECT nasbench_hash({bits}, {ops})"));
    assert_eq!(h, "28cfc7874f6d200472e1a9dcd8650aa0");
    // The dataset's parameter count of this cell (real value).
    let p: i64 = one(&c, &format!("SELECT nasbench_params({bits}, {ops})"));
    assert_eq!(p, 2_694_282);
    // A full 7-vertex DAG has 21 edges: outside the domain, with the
    // original's message; it still hashes.
    let full = "'0111111001111100011110000111000001100000010000000'";
    let ops7 = "'-1,0,0,0,0,0,-2'";
    let chk: String = one(&c, &format!("SELECT nasbench_check({full}, {ops7})"));
    assert_eq!(chk, "too many edges, got 21 (max edges = 9)");
    let v: bool = one(&c, &format!("SELECT nasbench_is_valid({full}, {ops7})"));
    assert!(!v);
    let h: Option<String> = one(&c, &format!("SELECT nasbench_hash({full}, {ops7})"));
    assert!(h.is_some());
}

#[test]
fn nulls_give_null_and_bad_arguments_are_named_errors() {
    let c = conn();
    for sql in [
        "SELECT nasbench_hash(NULL::VARCHAR, 'input,output')",
        "SELECT nasbench_hash('0100', NULL::VARCHAR)",
        "SELECT nasbench_params(NULL::INTEGER[][], ['input','output'])",
        "SELECT nasbench_check('0100', NULL::VARCHAR[])",
    ] {
        let v: Option<String> = c
            .query_row(sql, [], |r| r.get::<_, duckdb::types::Value>(0))
            .map(|v| match v {
                duckdb::types::Value::Null => None,
                other => Some(format!("{other:?}")),
            })
            .unwrap();
        assert_eq!(v, None, "{sql}");
    }
    let e = error(&c, "SELECT nasbench_hash('010', 'input,output')");
    assert!(e.contains("nasbench_hash") && e.contains("matrix"), "{e}");
    let e = error(
        &c,
        "SELECT nasbench_hash([[0,1],[0,0]], ['input','conv3x3-bn-relu','output'])",
    );
    assert!(
        e.contains("nasbench_hash: row 1: length of ops must match matrix dimensions"),
        "{e}"
    );
    let e = error(&c, "SELECT prune([[0,1],[1,0]], ['input','output'])");
    assert!(
        e.contains("prune: row 1: matrix must be upper triangular"),
        "{e}"
    );
    let e = error(
        &c,
        "SELECT nasbench_hash([[0,1,1],[0,0,1],[0,0,0]], ['input','conv5x5','output'])",
    );
    assert!(
        e.contains("nasbench_hash: argument ops, row 1") && e.contains("conv5x5"),
        "{e}"
    );
    let e = error(
        &c,
        "SELECT nasbench_hash('011001000', 'input,nonsense,output')",
    );
    assert!(e.contains("argument ops, row 1"), "{e}");
    // The error names the row within the chunk.
    c.execute_batch(
        "CREATE TABLE t AS SELECT * FROM (VALUES ('0100', 'input,output'), ('01000', 'input,output')) v(m, o)",
    )
    .unwrap();
    let e = error(&c, "SELECT nasbench_hash(m, o) FROM t");
    assert!(e.contains("argument matrix, row 2"), "{e}");
}

thread_local! {
    /// One connection for all of the random cases (their statements stay
    /// prepared in its cache; opening a database per case costs more than
    /// the case).
    static RANDOM_CASES: Connection = {
        let c = conn();
        c.set_prepared_statement_cache_capacity(32);
        c
    };
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random matrices (any size, any integers) and op lists: every call
    /// returns a value or an SQL error; nothing crashes the process. The
    /// arguments are bound as VARCHAR parameters and cast in the statement,
    /// which DuckDB then parses once (tests/fuzz.rs also spells them out as
    /// literals).
    #[test]
    fn random_arguments_never_crash(
        rows in proptest::collection::vec(proptest::collection::vec(-2i64..3, 0..9), 0..9),
        ops in proptest::collection::vec("[a-z0-9x-]{0,16}", 0..9),
        text in "[01 ,\\[\\]a-z-]{0,80}",
    ) {
        let m = format!("[{}]", rows.iter().map(|r| format!("[{}]", r.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","))).collect::<Vec<_>>().join(","));
        let o = format!("[{}]", ops.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(","));
        let (matrix, op_list, bits) = ("$1::VARCHAR::BIGINT[][]", "$2::VARCHAR::VARCHAR[]", "$1::VARCHAR");
        for f in ["nasbench_hash", "prune", "nasbench_is_valid", "nasbench_check", "nasbench_params"] {
            for (a, b, va, vb) in [
                (matrix, op_list, &m, &o),
                (bits, "$2::VARCHAR", &text, &text),
                (matrix, "$2::VARCHAR", &m, &text),
                (bits, op_list, &text, &o),
            ] {
                let sql = format!("SELECT ({f}({a}, {b}))::VARCHAR");
                let r = RANDOM_CASES.with(|c| {
                    c.prepare_cached(&sql)
                        .unwrap_or_else(|e| panic!("{sql}: {e}"))
                        .query_row(duckdb::params![va, vb], |r| r.get::<_, Option<String>>(0))
                });
                if let Err(e) = r {
                    let e = e.to_string();
                    prop_assert!(!e.contains("panicked"), "{sql} with $1 = {va:?}, $2 = {vb:?}: {e}");
                }
            }
        }
    }
}
