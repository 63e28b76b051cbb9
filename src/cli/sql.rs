//! `nasbench sql`: SQL over a nasbench database with the nasbench functions loaded: an interactive shell, or one-shot for scripts.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use duckdb::Connection;
use nasbench::db::export::write_parquet;
use nasbench::db::open;

/// Run SQL against a nasbench database, with `nasbench_hash`, `prune`,
/// `nasbench_is_valid`, `nasbench_check` and `nasbench_params` loaded.
///
/// With -c or -f the statements run once and the results are printed (for
/// scripts and pipes); with neither, SQL is read from stdin when it is not a
/// terminal, and an interactive shell starts when it is: line editing,
/// history (~/.nasbench_history), statements over several lines until `;`,
/// and the dot commands `.tables`, `.schema [TABLE]`, `.timer on|off`,
/// `.help`, `.quit`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  nasbench sql --db nasbench-demo.duckdb
  nasbench sql --db nasbench.duckdb -c \"SELECT * FROM model_stats WHERE epochs = 108 ORDER BY mean_final_validation_accuracy DESC LIMIT 5\"
  nasbench sql -c \"SELECT nasbench_hash('0110 0001 0001 0000', 'input,conv3x3-bn-relu,maxpool3x3,output')\"
  nasbench sql --db nasbench.duckdb -f query.sql --format csv > out.csv")]
pub struct Args {
    /// The database (default: an in-memory one). A file that does not
    /// exist is an error (a typo would otherwise make an empty database)
    /// unless --create is given.
    #[arg(long, default_value = ":memory:", value_name = "FILE")]
    db: PathBuf,
    /// Create --db if it does not exist (an empty database).
    #[arg(long)]
    create: bool,
    /// Run these statements (repeatable) and exit.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    commands: Vec<String>,
    /// Run the statements in this file and exit.
    #[arg(short, long, value_name = "FILE.sql")]
    file: Option<PathBuf>,
    /// Output format of results.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// With --format parquet: the file to write (the last result).
    #[arg(short, long, value_name = "FILE.parquet")]
    output: Option<PathBuf>,
}

/// How results are printed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// An aligned table.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per row, a line each.
    Json,
    /// A Parquet file (needs --output).
    Parquet,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.format == Format::Parquet && a.output.is_none() {
        bail!("--format parquet needs --output FILE.parquet");
    }
    if a.db.as_os_str() != ":memory:" && !a.create && !a.db.exists() {
        bail!(
            "{}: no such database (nasbench ingest FILE --db {0} makes one; \
             --create starts an empty one)",
            a.db.display()
        );
    }
    let conn = open(&a.db)?;
    let mut script = a.commands.join(";\n");
    if let Some(f) = &a.file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        script.push_str(";\n");
        script.push_str(&text);
    }
    if script.trim().is_empty() {
        if std::io::stdin().is_terminal() {
            return shell(&conn, &a);
        }
        std::io::stdin()
            .read_to_string(&mut script)
            .context("reading SQL from stdin")?;
    }
    for stmt in split_statements(&script) {
        let batches = query(&conn, &stmt)?;
        print(&batches, &a)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs one statement and returns its result.
fn query(conn: &Connection, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let mut stmt = conn.prepare(sql).map_err(|e| anyhow::anyhow!("{e}"))?;
    let result = stmt.query_arrow([]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let schema = result.get_schema();
    let batches: Vec<RecordBatch> = result.collect();
    // An empty result still has its columns (printed as a header).
    if batches.is_empty() {
        return Ok(vec![RecordBatch::new_empty(schema)]);
    }
    Ok(batches)
}

fn print(batches: &[RecordBatch], a: &Args) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Table => {
            if batches.iter().any(|b| b.num_columns() > 0) {
                writeln!(out, "{}", pretty_format_batches(batches)?)?;
            }
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for b in batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        Format::Parquet => {
            if let (Some(path), Some(first)) = (&a.output, batches.first()) {
                write_parquet(path, first.schema(), batches)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Splits a script into statements at `;` outside quotes and comments.
fn split_statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = script.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    cur.push(c);
                }
                '-' if chars.peek() == Some(&'-') => {
                    // A line comment: skip to its end.
                    for d in chars.by_ref() {
                        if d == '\n' {
                            cur.push('\n');
                            break;
                        }
                    }
                }
                ';' => out.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            },
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

const SHELL_HELP: &str = ".tables            list tables and views
.schema [TABLE]    CREATE statements (of one table)
.timer on|off      print each statement's run time
.help              this text
.quit              leave (also Ctrl-D)
Statements end with ';' and may span lines. Functions: nasbench_hash, prune,
nasbench_is_valid, nasbench_check, nasbench_params (matrix, ops).";

fn shell(conn: &Connection, a: &Args) -> anyhow::Result<ExitCode> {
    let mut rl = rustyline::DefaultEditor::new().context("starting the line editor")?;
    let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".nasbench_history"));
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    eprintln!(
        "nasbench sql on {} (DuckDB); .help for help, Ctrl-D to leave",
        a.db.display()
    );
    let mut timer = false;
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() { "D " } else { "· " };
        let line = match rl.readline(prompt) {
            Ok(l) => l,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                pending.clear();
                continue;
            }
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if pending.is_empty() && trimmed.starts_with('.') {
            let _ = rl.add_history_entry(trimmed);
            let mut words = trimmed.split_whitespace();
            let sql = match (words.next(), words.next()) {
                (Some(".quit" | ".exit"), _) => break,
                (Some(".help"), _) => {
                    eprintln!("{SHELL_HELP}");
                    continue;
                }
                (Some(".timer"), Some(v)) => {
                    timer = v == "on";
                    continue;
                }
                (Some(".tables"), _) => {
                    "SELECT table_name AS name, table_type AS type FROM information_schema.tables ORDER BY 1".to_string()
                }
                (Some(".schema"), t) => format!(
                    "SELECT sql FROM duckdb_tables() {w} UNION ALL SELECT sql FROM duckdb_views() WHERE NOT internal {a}",
                    w = t.map(|t| format!("WHERE table_name = {}", nasbench::db::sql_literal(t))).unwrap_or_default(),
                    a = t.map(|t| format!("AND view_name = {}", nasbench::db::sql_literal(t))).unwrap_or_default(),
                ),
                _ => {
                    eprintln!("unknown command {trimmed}; .help lists them");
                    continue;
                }
            };
            match query(conn, &sql) {
                // Schemas print as plain SQL, as the DuckDB CLI does.
                Ok(b) if trimmed.starts_with(".schema") => {
                    for batch in &b {
                        let col = batch.column(0);
                        let sql = arrow::array::AsArray::as_string::<i32>(col.as_ref());
                        for stmt in sql.iter().flatten() {
                            println!("{stmt}");
                        }
                    }
                }
                Ok(b) => print(&b, a)?,
                Err(e) => eprintln!("Error: {e}"),
            }
            continue;
        }
        pending.push_str(&line);
        pending.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let text = std::mem::take(&mut pending);
        let _ = rl.add_history_entry(text.trim());
        for stmt in split_statements(&text) {
            let start = Instant::now();
            match query(conn, &stmt) {
                Ok(b) => {
                    print(&b, a)?;
                    if timer {
                        eprintln!("Run Time: {:.3} s", start.elapsed().as_secs_f64());
                    }
                }
                Err(e) => eprintln!("Error: {e}"),
            }
        }
    }
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::split_statements;

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        let s = split_statements("SELECT 'a;b'; -- note; here\nSELECT \"x;\" FROM t;\n\n SELECT 3");
        assert_eq!(s, ["SELECT 'a;b'", "SELECT \"x;\" FROM t", "SELECT 3"]);
    }
}
