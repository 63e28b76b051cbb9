-- Moves trained runs from the flat staging table `unit_rows` (one row per
-- evaluation point, run columns repeated; what a worker writes as Parquet)
-- into models, training_runs and evaluations. Runs already present are
-- skipped, so merging the same files twice changes nothing.
CREATE OR REPLACE TEMP TABLE new_rows AS
SELECT * FROM unit_rows
WHERE run_id NOT IN (SELECT run_id FROM training_runs);

INSERT INTO models
SELECT DISTINCT ON (hash) hash, num_vertices, num_edges, adjacency, matrix, ops, trainable_parameters
FROM new_rows
WHERE hash NOT IN (SELECT hash FROM models);

INSERT INTO training_runs
SELECT DISTINCT ON (run_id) run_id, hash, epochs, repeat, config, backend, device, seed,
       trainable_parameters, started_at, finished_at, status, error, attempts
FROM new_rows;

INSERT INTO evaluations
SELECT hash, epochs, repeat, point, current_epoch, training_time, train_accuracy,
       validation_accuracy, test_accuracy, NULL, total_time, run_id
FROM new_rows
WHERE point IS NOT NULL
ORDER BY run_id, point;

DROP TABLE new_rows;
