//! DuckDB database files: the embedded schema in `sql/`, building a database under a temporary name and renaming it into place, and Parquet export through DuckDB.

pub mod export;
pub mod extension;
pub mod ingest;
pub mod lock;
pub mod sqlfn;

use std::ffi::{CStr, CString, c_char};
use std::ops::Deref;
use std::path::Path;

use arrow::array::RecordBatchReader;
use arrow::ffi_stream::FFI_ArrowArrayStream;
use duckdb::{Connection, ffi};

use crate::output::{make_readable, parent_dir};

/// `sql/schema.sql`: the tables `models` and `evaluations`.
pub const SCHEMA_SQL: &str = include_str!("../../sql/schema.sql");
/// `sql/keys.sql`: the primary key of `models`, added once it is loaded.
pub const KEYS_SQL: &str = include_str!("../../sql/keys.sql");
/// `sql/views.sql`: the views `runs` and `model_stats`.
pub const VIEWS_SQL: &str = include_str!("../../sql/views.sql");
/// `sql/macros.sql`: the table macros `nasbench_query` and `top_cells`.
pub const MACROS_SQL: &str = include_str!("../../sql/macros.sql");
/// `sql/training.sql`: the table `training_runs`.
pub const TRAINING_SQL: &str = include_str!("../../sql/training.sql");
/// `sql/unit_rows.sql`: the staging table of trained runs.
pub const UNIT_ROWS_SQL: &str = include_str!("../../sql/unit_rows.sql");
/// `sql/merge_runs.sql`: staged runs into the tables.
pub const MERGE_RUNS_SQL: &str = include_str!("../../sql/merge_runs.sql");
/// `sql/cells.sql`: the table `cells` (the generated search space).
pub const CELLS_SQL: &str = include_str!("../../sql/cells.sql");

/// The oldest DuckDB whose storage format new databases use.
pub const STORAGE_COMPATIBILITY: &str = "v1.5.0";

/// Error while building or exporting a database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// File system error, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// DuckDB reported an error while doing `what`.
    #[error("{what}: {source}")]
    DuckDb {
        /// What was being done.
        what: String,
        /// The cause.
        source: duckdb::Error,
    },
    /// DuckDB's C API reported `message` while doing `what`.
    #[error("{what}: {message}")]
    DuckDbC {
        /// What was being done.
        what: String,
        /// DuckDB's message.
        message: String,
    },
    /// Building or formatting Arrow batches failed.
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl DbError {
    /// An Arrow error while building or formatting batches.
    pub fn from_arrow(e: arrow::error::ArrowError) -> Self {
        DbError::Arrow(e)
    }
}

/// Attaches a description of what was being done to a DuckDB error.
pub trait DuckDbContext<T> {
    /// Wraps the error as [`DbError::DuckDb`] with `what`.
    fn during(self, what: impl Into<String>) -> Result<T, DbError>;
}

impl<T> DuckDbContext<T> for Result<T, duckdb::Error> {
    fn during(self, what: impl Into<String>) -> Result<T, DbError> {
        self.map_err(|source| DbError::DuckDb {
            what: what.into(),
            source,
        })
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DbError + '_ {
    move |source| DbError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A database being built by [`create_atomically`]: a connection (through
/// `Deref`) plus DuckDB's C handle, which bulk loads through Arrow streams
/// ([`NewDb::insert_arrow`]) need.
pub struct NewDb {
    // Declared first: dropped before the database it connects to.
    conn: Connection,
    raw: RawDatabase,
}

impl Deref for NewDb {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl NewDb {
    /// Inserts every batch of `batches` into `table` (columns in table
    /// order) with one `INSERT ... SELECT` over DuckDB's Arrow scan, which
    /// converts and compresses on all of DuckDB's threads while keeping the
    /// batches' order. Returns the rows inserted.
    ///
    /// The stream is read on DuckDB's threads; a reader that ends early
    /// just ends the insert (the caller reports why). A reader error fails
    /// the insert with the reader's message.
    pub fn insert_arrow(
        &self,
        table: &str,
        batches: Box<dyn RecordBatchReader + Send>,
    ) -> Result<u64, DbError> {
        self.loader().insert_arrow(table, batches)
    }

    /// A handle for [`Loader::insert_arrow`] that other threads may use
    /// while this connection stays on its own.
    pub fn loader(&self) -> Loader<'_> {
        Loader { raw: &self.raw }
    }
}

/// Bulk loads into a [`NewDb`] from any thread: each load runs on a
/// connection of its own.
#[derive(Clone, Copy)]
pub struct Loader<'a> {
    raw: &'a RawDatabase,
}

impl Loader<'_> {
    /// [`NewDb::insert_arrow`], from any thread.
    pub fn insert_arrow(
        &self,
        table: &str,
        batches: Box<dyn RecordBatchReader + Send>,
    ) -> Result<u64, DbError> {
        let fail = |message: String| DbError::DuckDbC {
            what: format!("loading {table}"),
            message,
        };
        // Declared before the connection: outlives every use DuckDB makes.
        let mut stream = FFI_ArrowArrayStream::new(batches);
        let conn = RawConnection::connect(self.raw).map_err(fail)?;
        // The C API creates the scan as a view in the connection's current
        // database; a view over a stream cannot be stored in a file, so it
        // goes into an in-memory database attached for the load.
        let target = quote_ident(
            &conn
                .query_string("SELECT current_database()")
                .map_err(fail)?,
        );
        let mem = quote_ident(&format!("nasbench_arrow_{table}"));
        conn.execute(&format!("ATTACH ':memory:' AS {mem}"))
            .map_err(fail)?;
        let loaded = conn.execute(&format!("USE {mem}")).and_then(|_| {
            conn.insert_stream(
                &mut stream,
                &format!("{target}.main.{}", quote_ident(table)),
            )
        });
        let detached = conn.execute(&format!("USE {target}; DETACH {mem}"));
        let rows = loaded.map_err(fail)?;
        detached.map_err(fail)?;
        Ok(rows)
    }
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// DuckDB's C handle of a database; closed on drop, after its connections.
struct RawDatabase(ffi::duckdb_database);

// SAFETY: a DuckDB database handle may be used from any thread.
unsafe impl Send for RawDatabase {}
// SAFETY: DuckDB synchronises connections to one database internally.
unsafe impl Sync for RawDatabase {}

impl RawDatabase {
    /// Opens (creating) the database at `path` with DuckDB settings.
    fn open(path: &Path, settings: &[(&str, &str)]) -> Result<Self, String> {
        use std::os::unix::ffi::OsStrExt;
        let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        let mut config: ffi::duckdb_config = std::ptr::null_mut();
        // SAFETY: `config` is a valid out-pointer.
        if unsafe { ffi::duckdb_create_config(&mut config) } != ffi::DuckDBSuccess {
            return Err("cannot allocate a DuckDB configuration".into());
        }
        let mut result = Ok(());
        for (key, value) in settings {
            let (k, v) = (CString::new(*key), CString::new(*value));
            let (Ok(k), Ok(v)) = (k, v) else {
                result = Err(format!("setting {key}: contains a NUL byte"));
                break;
            };
            // SAFETY: `config` is live; `k` and `v` are NUL-terminated.
            if unsafe { ffi::duckdb_set_config(config, k.as_ptr(), v.as_ptr()) }
                != ffi::DuckDBSuccess
            {
                result = Err(format!("setting {key} = {value}: not accepted by DuckDB"));
                break;
            }
        }
        let mut db: ffi::duckdb_database = std::ptr::null_mut();
        let mut err: *mut c_char = std::ptr::null_mut();
        if result.is_ok() {
            // SAFETY: valid path, out-pointers and configuration.
            let state = unsafe { ffi::duckdb_open_ext(c_path.as_ptr(), &mut db, config, &mut err) };
            if state != ffi::DuckDBSuccess {
                result = Err(take_message(err, "DuckDB could not open the file"));
            }
        }
        // SAFETY: `config` was created above and is not used again.
        unsafe { ffi::duckdb_destroy_config(&mut config) };
        result.map(|()| RawDatabase(db))
    }
}

impl Drop for RawDatabase {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: opened by `RawDatabase::open`; every connection to it
            // (the `Connection` of `NewDb` and each `RawConnection`) is
            // closed before, by field order and scope.
            unsafe { ffi::duckdb_close(&mut self.0) };
        }
    }
}

/// A C-API connection, for what duckdb-rs does not expose; disconnects on drop.
struct RawConnection(ffi::duckdb_connection);

impl RawConnection {
    fn connect(db: &RawDatabase) -> Result<Self, String> {
        let mut conn: ffi::duckdb_connection = std::ptr::null_mut();
        // SAFETY: `db` is open; `conn` is a valid out-pointer.
        if unsafe { ffi::duckdb_connect(db.0, &mut conn) } != ffi::DuckDBSuccess {
            return Err("cannot connect to the new database".into());
        }
        Ok(RawConnection(conn))
    }

    /// Registers `stream` as the view `arrow_stream` in the current
    /// database and inserts all of it into `table` (a qualified name).
    fn insert_stream(&self, stream: &mut FFI_ArrowArrayStream, table: &str) -> Result<u64, String> {
        // SAFETY: the connection is open; `stream` is a valid Arrow C
        // stream that the caller keeps alive until after the connection is
        // closed. DuckDB's C API copies the stream struct with a no-op
        // release, so ownership stays with the caller.
        let state = unsafe {
            ffi::duckdb_arrow_scan(
                self.0,
                c"arrow_stream".as_ptr(),
                std::ptr::from_mut(stream).cast::<ffi::_duckdb_arrow_stream>(),
            )
        };
        if state != ffi::DuckDBSuccess {
            return Err("DuckDB refused the Arrow stream".into());
        }
        self.execute(&format!("INSERT INTO {table} SELECT * FROM arrow_stream"))
    }

    /// Runs one statement; returns the rows it changed, or DuckDB's error.
    fn execute(&self, sql: &str) -> Result<u64, String> {
        // SAFETY: `read` gets the live result of a successful query.
        self.query(sql, |result| {
            Ok(unsafe { ffi::duckdb_rows_changed(result) })
        })
    }

    /// The first column of the first row of `sql`'s result, as text.
    fn query_string(&self, sql: &str) -> Result<String, String> {
        self.query(sql, |result| {
            // SAFETY: `result` is the live result of a successful query;
            // the value is read only if a row exists, and freed by
            // `take_message`.
            unsafe {
                if ffi::duckdb_row_count(result) == 0 {
                    return Err(format!("{sql}: no rows"));
                }
                Ok(take_message(ffi::duckdb_value_varchar(result, 0, 0), ""))
            }
        })
    }

    /// Runs `sql` and gives its result to `read` if it succeeded; the
    /// result is destroyed either way.
    fn query<T>(
        &self,
        sql: &str,
        read: impl FnOnce(&mut ffi::duckdb_result) -> Result<T, String>,
    ) -> Result<T, String> {
        let c_sql = CString::new(sql).map_err(|e| e.to_string())?;
        // SAFETY: an all-zero result is the documented initial state.
        let mut result: ffi::duckdb_result = unsafe { std::mem::zeroed() };
        // SAFETY: open connection, NUL-terminated SQL, valid out-pointer.
        let state = unsafe { ffi::duckdb_query(self.0, c_sql.as_ptr(), &mut result) };
        let out = if state == ffi::DuckDBSuccess {
            read(&mut result)
        } else {
            // SAFETY: the live result of a failed query.
            Err(unsafe { result_error(&mut result) })
        };
        // SAFETY: filled by `duckdb_query` (even on failure), destroyed once.
        unsafe { ffi::duckdb_destroy_result(&mut result) };
        out
    }
}

/// The error message of a failed result.
///
/// # Safety
/// `result` is a live result of `duckdb_query`.
unsafe fn result_error(result: &mut ffi::duckdb_result) -> String {
    // SAFETY: per the contract; the message belongs to the result.
    let msg = unsafe { ffi::duckdb_result_error(result) };
    if msg.is_null() {
        "DuckDB reported an error without a message".to_string()
    } else {
        // SAFETY: a NUL-terminated string owned by the live result.
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for RawConnection {
    fn drop(&mut self) {
        // SAFETY: connected by `RawConnection::connect`, closed once.
        unsafe { ffi::duckdb_disconnect(&mut self.0) };
    }
}

/// Takes (and frees) a message DuckDB allocated, or `fallback` if none.
fn take_message(err: *mut c_char, fallback: &str) -> String {
    if err.is_null() {
        return fallback.to_string();
    }
    // SAFETY: DuckDB returned a NUL-terminated string it allocated.
    let msg = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: allocated by DuckDB, freed once.
    unsafe { ffi::duckdb_free(err.cast()) };
    msg
}

/// How [`create_with`] treats a file already at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// Replace it (an ingest).
    Replace,
    /// Keep it: two processes that both found the file missing end up with
    /// one database, the first one's.
    Keep,
}

/// Builds a new database at `path` with `build` and puts it in place of
/// any earlier one, atomically and crash-safely (see [`create_with`]).
pub fn create_atomically<T, E: From<DbError>>(
    path: &Path,
    build: impl FnOnce(&NewDb) -> Result<T, E>,
) -> Result<T, E> {
    let (value, _) = create_with(path, Existing::Replace, |db| build(db).map(Some))?;
    // Replace always builds.
    value.ok_or_else(|| {
        E::from(DbError::DuckDbC {
            what: format!("creating {}", path.display()),
            message: "the database was not built".into(),
        })
    })
}

/// Builds a database at `path` with `build` unless one is there (checked
/// under the write lock, and again by the final link, so that two
/// processes creating it at once make one). Returns whether it was made.
pub fn create_if_missing<E: From<DbError>>(
    path: &Path,
    build: impl FnOnce(&NewDb) -> Result<(), E>,
) -> Result<bool, E> {
    create_with(path, Existing::Keep, build).map(|((), made)| made)
}

/// Builds a new database at `path` with `build`, atomically and under the
/// database's write lock ([`crate::db::lock`]).
///
/// The database is created in a temporary directory beside `path`, built,
/// checkpointed and closed. Then a write-ahead log left beside the old file
/// is checkpointed into it (DuckDB replays and removes it), so that no log
/// is left to be replayed onto the new file; only then is the new file
/// synced and renamed onto `path`, and the directory synced. If `build`
/// fails, or the process dies at any step, `path` holds either the old
/// database whole or the new one whole, never a stale log beside the new
/// one; the temporary files are removed on every exit but SIGKILL.
///
/// Returns `build`'s value and whether the new file was put in place
/// ([`Existing::Keep`] that finds the file there does not call `build`).
fn create_with<T: Default, E: From<DbError>>(
    path: &Path,
    existing: Existing,
    build: impl FnOnce(&NewDb) -> Result<T, E>,
) -> Result<(T, bool), E> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "nasbench.duckdb".into());
    let _lock = crate::db::lock::lock_for_write(path, |l| {
        eprintln!(
            "waiting for another nasbench writer of {} ({} is locked)",
            path.display(),
            l.display()
        );
    })
    .map_err(io_err(path))?;
    if existing == Existing::Keep && path.exists() {
        return Ok((T::default(), false));
    }
    remove_stale_temporaries(dir, &name);
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempdir_in(dir)
        .map_err(io_err(dir))?;
    let _tracked = crate::output::cleanup::track(tmp.path());
    let tmp_db = tmp.path().join(&name);
    let creating = format!("creating {}", tmp_db.display());
    // Files readable by DuckDB 1.5 and later: the stock DuckDB CLI on PyPI
    // (1.5.6) opens what nasbench writes. (v1.2 storage also works but
    // ingests the full file about 4 s slower.)
    let raw = RawDatabase::open(
        &tmp_db,
        &[("storage_compatibility_version", STORAGE_COMPATIBILITY)],
    )
    .map_err(|message| DbError::DuckDbC {
        what: creating.clone(),
        message,
    })?;
    // SAFETY: `raw` is open and, by `NewDb`'s field order, outlives `conn`.
    let conn = unsafe { Connection::open_from_raw(raw.0) }.during(creating)?;
    let db = NewDb { conn, raw };
    crate::db::sqlfn::register(&db).during("registering the nasbench functions")?;
    let value = build(&db)?;
    crate::db::lock::failpoint("replace:built");
    db.execute_batch("CHECKPOINT")
        .during("checkpointing the new database")?;
    let NewDb { conn, raw } = db;
    conn.close()
        .map_err(|(_, e)| e)
        .during("closing the new database")?;
    drop(raw);
    crate::db::lock::failpoint("replace:new-closed");
    // A write-ahead log beside the old file belongs to it: replayed onto
    // the new file it would corrupt it, and removed before the rename it
    // would lose the old file's last writes if the process died between.
    let wal = crate::output::sidecar(path, ".wal");
    if wal.exists() {
        checkpoint_file(path)?;
        crate::db::lock::failpoint("replace:old-checkpointed");
        if wal.exists() {
            return Err(DbError::Io {
                path: wal.display().to_string(),
                source: std::io::Error::other(
                    "the old database's write-ahead log is still there after a checkpoint \
                     (is another program writing to it?); nothing was replaced",
                ),
            }
            .into());
        }
    }
    sync_file(&tmp_db).map_err(io_err(&tmp_db))?;
    crate::db::lock::failpoint("replace:synced");
    match existing {
        Existing::Replace => std::fs::rename(&tmp_db, path).map_err(io_err(path))?,
        Existing::Keep => match std::fs::hard_link(&tmp_db, path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Ok((value, false));
            }
            Err(e) => return Err(io_err(path)(e).into()),
        },
    }
    crate::db::lock::failpoint("replace:renamed");
    sync_file(dir).map_err(io_err(dir))?;
    Ok((value, true))
}

/// Removes the temporary directories that builds of database `name` in
/// `dir` left when they were killed (SIGKILL, a power cut). Only the holder
/// of the database's write lock builds one, so under the lock every such
/// directory is stale.
fn remove_stale_temporaries(dir: &Path, name: &str) {
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let file = file.to_string_lossy();
        if file.starts_with(&prefix)
            && file.ends_with(".tmp")
            && e.file_type().is_ok_and(|t| t.is_dir())
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// How long a replace waits for another process to close the old file.
const REPLACE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Opens the database at `path` for writing (waiting out another process's
/// DuckDB lock for up to [`REPLACE_PATIENCE`]), checkpoints it and closes it: its
/// write-ahead log is replayed into the file and removed.
fn checkpoint_file(path: &Path) -> Result<(), DbError> {
    let what = format!("checkpointing {}", path.display());
    let conn =
        crate::db::lock::wait_while_locked(path, REPLACE_PATIENCE, || Connection::open(path))
            .during(what.clone())?;
    conn.execute_batch("CHECKPOINT").during(what.clone())?;
    conn.close().map_err(|(_, e)| e).during(what)
}

/// fsync of a file or a directory.
fn sync_file(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// Trained runs carried from an old database into a new one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CarriedRuns {
    /// Rows of `training_runs`.
    pub runs: u64,
    /// Their rows of `evaluations`.
    pub evaluations: u64,
    /// Rows of `models` for trained cells the new data lacks.
    pub models: u64,
}

/// Copies every trained run of the database at `old` (its `training_runs`
/// rows, their `evaluations` points and the `models` rows of cells the new
/// database lacks) into `new`, which has the dataset schema. No file at
/// `old`, or a database without `training_runs`, carries nothing; a file
/// DuckDB cannot read is an error naming it.
pub fn carry_trained_runs(new: &Connection, old: &Path) -> Result<CarriedRuns, DbError> {
    if !old.exists() {
        return Ok(CarriedRuns::default());
    }
    let what = format!("reading the trained runs of {}", old.display());
    crate::db::lock::wait_while_locked(old, REPLACE_PATIENCE, || {
        new.execute_batch(&format!(
            "ATTACH {} AS nasbench_old (READ_ONLY)",
            sql_literal(&old.to_string_lossy())
        ))
    })
    .during(what.clone())?;
    let carried = (|| {
        if !table_exists(new, Some("nasbench_old"), "training_runs")? {
            return Ok(CarriedRuns::default());
        }
        let old_runs: i64 =
            new.query_row("SELECT count(*) FROM nasbench_old.training_runs", [], |r| {
                r.get(0)
            })?;
        if old_runs == 0 {
            return Ok(CarriedRuns::default());
        }
        new.execute_batch(TRAINING_SQL)?;
        // The runs `new` lacks; their points and cells, then the runs.
        new.execute_batch(
            "CREATE OR REPLACE TEMP TABLE nasbench_carried AS \
             SELECT run_id, hash FROM nasbench_old.training_runs \
             WHERE run_id NOT IN (SELECT run_id FROM training_runs)",
        )?;
        let evaluations = new.execute(
            "INSERT INTO evaluations BY NAME SELECT * FROM nasbench_old.evaluations \
             WHERE source IN (SELECT run_id FROM nasbench_carried) \
             ORDER BY source, epochs, repeat, point",
            [],
        )?;
        let models = new.execute(
            "INSERT INTO models BY NAME SELECT * FROM nasbench_old.models \
             WHERE hash IN (SELECT hash FROM nasbench_carried) \
             AND hash NOT IN (SELECT hash FROM models)",
            [],
        )?;
        let runs = new.execute(
            "INSERT INTO training_runs BY NAME SELECT * FROM nasbench_old.training_runs \
             WHERE run_id IN (SELECT run_id FROM nasbench_carried)",
            [],
        )?;
        new.execute_batch("DROP TABLE nasbench_carried")?;
        Ok(CarriedRuns {
            runs: runs as u64,
            evaluations: evaluations as u64,
            models: models as u64,
        })
    })();
    let detached = new.execute_batch("DETACH nasbench_old");
    let carried = carried.during(what.clone())?;
    detached.during(what)?;
    Ok(carried)
}

/// How long an open waits for another process to release the file
/// (DuckDB lets one process write a file, and a trainer holds it only while
/// it stores a run).
pub const OPEN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Opens a database (created if missing; in memory for `:memory:`) with
/// the nasbench functions registered, waiting up to [`OPEN_PATIENCE`] for
/// another process that holds the file.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    open_with(path, || {
        crate::db::lock::retry_locked(OPEN_PATIENCE, |_| {}, || Connection::open(path))
    })
}

/// [`open`] for a writer that may wait long: up to `patience`, saying once
/// on stderr that it waits for another process.
pub fn open_waiting(path: &Path, patience: std::time::Duration) -> Result<Connection, DbError> {
    open_with(path, || {
        crate::db::lock::wait_while_locked(path, patience, || Connection::open(path))
    })
}

/// The in-memory database for `:memory:`, else `connect`'s; with the
/// nasbench functions registered.
fn open_with(
    path: &Path,
    connect: impl FnOnce() -> duckdb::Result<Connection>,
) -> Result<Connection, DbError> {
    let conn = if path.as_os_str() == ":memory:" {
        Connection::open_in_memory()
    } else {
        connect()
    }
    .during(format!("opening {}", path.display()))?;
    crate::db::sqlfn::register(&conn).during("registering the nasbench functions")?;
    Ok(conn)
}

/// Creates the dataset tables (`sql/schema.sql`, `sql/training.sql`).
pub fn create_schema(conn: &Connection) -> Result<(), DbError> {
    conn.execute_batch(SCHEMA_SQL)
        .during("running sql/schema.sql")?;
    conn.execute_batch(TRAINING_SQL)
        .during("running sql/training.sql")
}

/// Adds the keys (`sql/keys.sql`); run once `models` is loaded, or at once
/// for a database that starts empty.
pub fn create_keys(conn: &Connection) -> Result<(), DbError> {
    conn.execute_batch(KEYS_SQL).during("running sql/keys.sql")
}

/// Creates the views and table macros (`sql/views.sql`, `sql/macros.sql`).
pub fn create_views(conn: &Connection) -> Result<(), DbError> {
    conn.execute_batch(VIEWS_SQL)
        .during("running sql/views.sql")?;
    conn.execute_batch(MACROS_SQL)
        .during("running sql/macros.sql")
}

/// Whether table `table` exists in schema `main` of the attached database
/// `database` (`None`: the current one).
pub fn table_exists(
    conn: &Connection,
    database: Option<&str>,
    table: &str,
) -> duckdb::Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM duckdb_tables() \
         WHERE database_name = coalesce(?, current_database()) \
         AND schema_name = 'main' AND table_name = ?",
        duckdb::params![database, table],
        |r| r.get(0),
    )
}

/// Quotes a string as an SQL literal.
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Writes the result of `query` to `path` as zstd Parquet, through a
/// temporary file renamed into place.
pub fn copy_to_parquet(conn: &Connection, query: &str, path: &Path) -> Result<(), DbError> {
    let dir = parent_dir(path);
    let tmp = tempfile::Builder::new()
        .prefix(".nasbench.")
        .suffix(".parquet.tmp")
        .tempfile_in(dir)
        .map_err(io_err(dir))?
        .into_temp_path();
    let _tracked = crate::output::cleanup::track(&tmp);
    let sql = format!(
        "COPY ({query}) TO {} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)",
        sql_literal(&tmp.to_string_lossy())
    );
    conn.execute_batch(&sql)
        .during(format!("writing {}", path.display()))?;
    make_readable(&tmp).map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| DbError::Io {
        path: path.display().to_string(),
        source: e.error,
    })?;
    Ok(())
}
