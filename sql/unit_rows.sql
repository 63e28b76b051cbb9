-- The flat staging table of trained runs: one row per evaluation point
-- (point NULL for a run that failed before its first evaluation), with the
-- run's and the cell's columns repeated. A worker writes one unit's rows as
-- one Parquet file; sql/merge_runs.sql moves them into the tables.
CREATE OR REPLACE TEMP TABLE unit_rows (
    run_id VARCHAR, hash VARCHAR, num_vertices INTEGER, num_edges INTEGER,
    adjacency VARCHAR, matrix INTEGER[][], ops VARCHAR[], trainable_parameters BIGINT,
    epochs INTEGER, repeat INTEGER, config VARCHAR, backend VARCHAR, device VARCHAR,
    seed UBIGINT, started_at TIMESTAMP, finished_at TIMESTAMP, status VARCHAR,
    error VARCHAR, attempts INTEGER,
    point INTEGER, current_epoch DOUBLE, training_time DOUBLE, train_accuracy DOUBLE,
    validation_accuracy DOUBLE, test_accuracy DOUBLE, total_time DOUBLE
);
