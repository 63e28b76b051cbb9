//! SQL function benchmark: `nasbench_hash` over a million rows in DuckDB
//! against the same hash called from Rust in a plain loop over the same
//! inputs (target: SQL at no less than 70% of the loop's speed).

use std::time::Instant;

use duckdb::Connection;
use nasbench::cell::generate::{GenerateOptions, NoProgress, generate};
use nasbench::cell::parse::{parse_matrix, parse_ops};
use nasbench::cell::spec::ModelSpec;
use nasbench::db::open;

const ROWS: usize = 1_000_000;

fn main() {
    let space = generate(&GenerateOptions::default(), &NoProgress).expect("generate");
    let inputs: Vec<(String, String)> = space
        .cells
        .iter()
        .cycle()
        .take(ROWS)
        .map(|c| {
            let labels: Vec<String> = c.graph.labels().iter().map(|l| l.to_string()).collect();
            (c.graph.adjacency_bits(), labels.join(","))
        })
        .collect();

    // Rust loop: the same parsing and hashing the SQL function does per row.
    let t = Instant::now();
    let mut n = 0usize;
    for (bits, labels) in &inputs {
        let m = parse_matrix(bits).expect("matrix");
        let o = parse_ops(labels).expect("ops");
        let h = ModelSpec::new(&m, o).expect("spec").hash().expect("hash");
        n += usize::from(h.0[0] & 1);
    }
    let rust = t.elapsed().as_secs_f64();
    std::hint::black_box(n);

    let conn: Connection = open(std::path::Path::new(":memory:")).expect("duckdb");
    conn.execute_batch("CREATE TABLE cells (bits VARCHAR, labels VARCHAR)")
        .expect("create");
    {
        let mut app = conn.appender("cells").expect("appender");
        for (b, l) in &inputs {
            app.append_row([b, l]).expect("append");
        }
    }
    // One thread, to compare with the single-threaded loop.
    conn.execute_batch("SET threads = 1").expect("threads");
    let t = Instant::now();
    let hashed: i64 = conn
        .query_row(
            "SELECT count(nasbench_hash(bits, labels)) FROM cells",
            [],
            |r| r.get(0),
        )
        .expect("query");
    let sql = t.elapsed().as_secs_f64();
    assert_eq!(hashed as usize, ROWS);
    println!(
        "nasbench_hash over {ROWS} rows, one thread: Rust loop {rust:.2} s ({:.0} rows/s), SQL {sql:.2} s ({:.0} rows/s): SQL at {:.0}% of the loop",
        ROWS as f64 / rust,
        ROWS as f64 / sql,
        100.0 * rust / sql
    );
}
