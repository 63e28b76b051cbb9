//! Runs the sqllogictest-style files under `tests/sql/` against the embedded DuckDB and, through the loadable extension, against the stock DuckDB CLI (when `.venv` has it).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ROOT, build_extension, venv_bin};
use duckdb::types::Value;
use nasbench::cell::generate::NoProgress;
use nasbench::db::ingest::{IngestOptions, ingest};
use nasbench::db::{create_atomically, open};

/// One test record of a `.test` file.
#[derive(Debug)]
enum Record {
    /// `require sample`: start from a database of the bundled sample.
    Require(String),
    /// `statement ok` / `statement error` (with a message substring).
    Statement {
        line: usize,
        sql: String,
        error: Option<String>,
    },
    /// `query`: the expected rows, columns tab-separated.
    Query {
        line: usize,
        sql: String,
        rows: Vec<String>,
    },
}

fn parse(text: &str) -> Vec<Record> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim_end();
        i += 1;
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let head = i;
        if let Some(what) = l.strip_prefix("require ") {
            out.push(Record::Require(what.trim().to_string()));
            continue;
        }
        // The SQL runs to `----` or a blank line.
        let mut sql = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() && lines[i].trim() != "----" {
            sql.push(lines[i]);
            i += 1;
        }
        let mut expected = Vec::new();
        if i < lines.len() && lines[i].trim() == "----" {
            i += 1;
            while i < lines.len() && !lines[i].trim().is_empty() {
                expected.push(lines[i].to_string());
                i += 1;
            }
        }
        let sql = sql.join("\n");
        match l {
            "statement ok" => out.push(Record::Statement {
                line: head,
                sql,
                error: None,
            }),
            "statement error" => out.push(Record::Statement {
                line: head,
                sql,
                error: Some(expected.join("\n")),
            }),
            q if q.starts_with("query") => out.push(Record::Query {
                line: head,
                sql,
                rows: expected,
            }),
            other => panic!("line {head}: unknown record {other:?}"),
        }
    }
    out
}

/// Something that runs one statement and returns its rows as text.
trait Engine {
    fn run(&mut self, sql: &str) -> Result<Vec<String>, String>;
}

struct Embedded(duckdb::Connection);

fn text(v: Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Boolean(b) => b.to_string(),
        Value::TinyInt(x) => x.to_string(),
        Value::SmallInt(x) => x.to_string(),
        Value::Int(x) => x.to_string(),
        Value::BigInt(x) => x.to_string(),
        Value::HugeInt(x) => x.to_string(),
        Value::Float(x) => x.to_string(),
        Value::Double(x) => x.to_string(),
        Value::Text(s) => s,
        other => format!("{other:?}"),
    }
}

impl Engine for Embedded {
    fn run(&mut self, sql: &str) -> Result<Vec<String>, String> {
        let mut stmt = self.0.prepare(sql).map_err(|e| e.to_string())?;
        let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
            let n = row.as_ref().column_count();
            let cols: Vec<String> = (0..n)
                .map(|i| row.get::<_, Value>(i).map(text).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?;
            out.push(cols.join("\t"));
        }
        Ok(out)
    }
}

/// The stock DuckDB CLI with the extension loaded, one process per statement.
struct Cli {
    cli: PathBuf,
    db: PathBuf,
    ext: PathBuf,
}

impl Engine for Cli {
    fn run(&mut self, sql: &str) -> Result<Vec<String>, String> {
        let o = Command::new(&self.cli)
            .args([
                "-unsigned",
                "-list",
                "-noheader",
                "-separator",
                "\t",
                "-nullvalue",
                "NULL",
            ])
            .arg(&self.db)
            .arg("-c")
            .arg(format!("LOAD '{}'; {sql}", self.ext.display()))
            .output()
            .map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        if !o.status.success() || stderr.contains("Error") {
            return Err(stderr);
        }
        Ok(stdout.lines().map(str::to_string).collect())
    }
}

/// Python's duckdb with the extension loaded: the statements of a file go
/// to one Python process, which answers with a JSON list of results.
fn python_results(
    python: &Path,
    db: &Path,
    ext: &Path,
    statements: &[String],
) -> Vec<Result<Vec<String>, String>> {
    const DRIVER: &str = r#"
import duckdb, json, sys
db, ext = sys.argv[1], sys.argv[2]
con = duckdb.connect(db, config={"allow_unsigned_extensions": True})
con.execute(f"LOAD '{ext}'")
def text(v):
    if v is None: return "NULL"
    if isinstance(v, bool): return "true" if v else "false"
    return repr(v) if isinstance(v, float) else str(v)
out = []
for sql in json.load(sys.stdin):
    try:
        rows = con.execute(sql).fetchall()
        out.append({"ok": ["	".join(text(v) for v in r) for r in rows]})
    except Exception as e:
        out.append({"error": str(e)})
print(json.dumps(out))
"#;
    let mut child = Command::new(python)
        .args(["-c", DRIVER])
        .arg(db)
        .arg(ext)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), statements).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python driver failed");
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter()
        .map(|r| match r.get("ok") {
            Some(rows) => Ok(rows
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect()),
            None => Err(r["error"].as_str().unwrap_or_default().to_string()),
        })
        .collect()
}

/// Replays precomputed results in order.
struct Replay(std::vec::IntoIter<Result<Vec<String>, String>>);

impl Engine for Replay {
    fn run(&mut self, _: &str) -> Result<Vec<String>, String> {
        self.0.next().unwrap_or_else(|| Err("no result".into()))
    }
}

fn statements(path: &Path) -> Vec<String> {
    parse(&std::fs::read_to_string(path).unwrap())
        .into_iter()
        .filter_map(|r| match r {
            Record::Statement { sql, .. } | Record::Query { sql, .. } => Some(sql),
            Record::Require(_) => None,
        })
        .collect()
}

fn sample_db(path: &Path) {
    let file = path.with_extension("tfrecord");
    std::fs::write(
        &file,
        include_bytes!("fixtures/nasbench_real_sample.tfrecord"),
    )
    .unwrap();
    create_atomically(path, |conn| {
        ingest(conn, &file, &IngestOptions::default(), &NoProgress)
    })
    .unwrap();
}

fn test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("tests/sql"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

/// Runs every record; returns the failures.
fn run_file(path: &Path, engine: &mut dyn Engine) -> Vec<String> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut failures = Vec::new();
    for r in parse(&std::fs::read_to_string(path).unwrap()) {
        match r {
            Record::Require(_) => {}
            Record::Statement { line, sql, error } => match (engine.run(&sql), error) {
                (Ok(_), None) => {}
                (Err(e), Some(want)) if e.contains(&want) => {}
                (got, want) => failures.push(format!(
                    "{name}:{line}: expected {}, got {got:?}",
                    want.map_or("success".to_string(), |w| format!("an error with {w:?}"))
                )),
            },
            Record::Query { line, sql, rows } => match engine.run(&sql) {
                Ok(got) if got == rows => {}
                got => failures.push(format!("{name}:{line}: expected {rows:?}, got {got:?}")),
            },
        }
    }
    failures
}

fn needs_sample(path: &Path) -> bool {
    parse(&std::fs::read_to_string(path).unwrap())
        .iter()
        .any(|r| matches!(r, Record::Require(w) if w == "sample"))
}

#[test]
fn sql_tests_pass_in_the_embedded_duckdb() {
    let mut failures = Vec::new();
    for f in test_files() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.duckdb");
        if needs_sample(&f) {
            sample_db(&db);
        }
        let mut engine = Embedded(open(&db).unwrap());
        failures.extend(run_file(&f, &mut engine));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn sql_tests_pass_in_the_stock_cli_and_python_with_the_extension() {
    let (Some(cli), Some(python)) = (venv_bin("duckdb"), venv_bin("python")) else {
        common::skipped(
            "no .venv/bin/duckdb (run .ci/run, or: python3 -m venv .venv && .venv/bin/pip install duckdb-cli duckdb)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ext = build_extension(dir.path(), Path::new(env!("CARGO_BIN_EXE_nasbench")));
    let mut failures = Vec::new();
    for (k, f) in test_files().iter().enumerate() {
        let db = dir.path().join(format!("t{k}.duckdb"));
        if needs_sample(f) {
            sample_db(&db);
        }
        let mut engine = Cli {
            cli: cli.clone(),
            db,
            ext: ext.clone(),
        };
        failures.extend(
            run_file(f, &mut engine)
                .into_iter()
                .map(|e| format!("CLI: {e}")),
        );
        let db = dir.path().join(format!("p{k}.duckdb"));
        if needs_sample(f) {
            sample_db(&db);
        }
        let results = python_results(&python, &db, &ext, &statements(f));
        let mut engine = Replay(results.into_iter());
        failures.extend(
            run_file(f, &mut engine)
                .into_iter()
                .map(|e| format!("Python: {e}")),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
