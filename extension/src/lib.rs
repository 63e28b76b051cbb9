//! The nasbench DuckDB extension: registers nasbench-db's scalar functions and table macros in the host DuckDB (stock CLI, Python `duckdb`).

use std::error::Error;

use duckdb::{Connection, duckdb_entrypoint_c_api};

/// Entry point DuckDB calls on `LOAD nasbench`: the scalar functions of
/// `nasbench::db::sqlfn`, then `sql/macros.sql` as temporary macros (so that
/// loading the extension never writes to the user's database file). DuckDB
/// binds a table macro when it is created, so the macros exist only when the
/// database open at LOAD time has the nasbench tables (`nasbench ingest`
/// creates them there already); the functions are always registered.
///
/// # Safety
/// Called by DuckDB with a valid connection, as the C extension API requires.
#[duckdb_entrypoint_c_api(ext_name = "nasbench", min_duckdb_version = "v1.2.0")]
pub unsafe fn extension_entrypoint(con: Connection) -> Result<(), Box<dyn Error>> {
    nasbench::db::sqlfn::register(&con)?;
    let macros =
        nasbench::db::MACROS_SQL.replace("CREATE OR REPLACE MACRO", "CREATE OR REPLACE TEMP MACRO");
    if con.execute_batch(&macros).is_err() {
        // No nasbench tables in this database: functions only.
    }
    Ok(())
}
