-- Views over the two tables, named as the original Python API names things.
-- Column references are qualified so that the table macros' parameter
-- `epochs` (sql/macros.sql) cannot capture them.

-- One row per training run: what `NASBench.get_metrics_from_hash(h)[1]
-- [epochs][repeat - 1]` returns, plus the cell's parameter count. Runs
-- trained by nasbench (source = their run id) are rows here too; `trained`
-- tells them from the dataset's.
CREATE VIEW runs AS
SELECT
    e.hash,
    e.epochs,
    e.repeat,
    e.source,
    e.source NOT IN ('nasbench-101', 'synthetic') AS trained,
    any_value(e.total_time) AS total_time,
    any_value(e.training_time)       FILTER (WHERE e.point = 1) AS halfway_training_time,
    any_value(e.train_accuracy)      FILTER (WHERE e.point = 1) AS halfway_train_accuracy,
    any_value(e.validation_accuracy) FILTER (WHERE e.point = 1) AS halfway_validation_accuracy,
    any_value(e.test_accuracy)       FILTER (WHERE e.point = 1) AS halfway_test_accuracy,
    any_value(e.training_time)       FILTER (WHERE e.point = 2) AS final_training_time,
    any_value(e.train_accuracy)      FILTER (WHERE e.point = 2) AS final_train_accuracy,
    any_value(e.validation_accuracy) FILTER (WHERE e.point = 2) AS final_validation_accuracy,
    any_value(e.test_accuracy)       FILTER (WHERE e.point = 2) AS final_test_accuracy,
    any_value(m.trainable_parameters) AS trainable_parameters
FROM evaluations e
JOIN models m ON m.hash = e.hash
GROUP BY e.hash, e.epochs, e.source, e.repeat;

-- Per cell, budget and origin (the dataset's runs, or runs trained by
-- nasbench: `trained`): the spread over repeats of the final accuracies
-- and training time. Rank cells with e.g.
--   SELECT * FROM model_stats WHERE epochs = 108 AND NOT trained
--   ORDER BY mean_final_validation_accuracy DESC LIMIT 10;
CREATE VIEW model_stats AS
SELECT
    r.hash,
    r.epochs,
    r.trained,
    count(*) AS repeats,
    avg(r.final_validation_accuracy)         AS mean_final_validation_accuracy,
    stddev_samp(r.final_validation_accuracy) AS std_final_validation_accuracy,
    min(r.final_validation_accuracy)         AS min_final_validation_accuracy,
    max(r.final_validation_accuracy)         AS max_final_validation_accuracy,
    avg(r.final_test_accuracy)               AS mean_final_test_accuracy,
    stddev_samp(r.final_test_accuracy)       AS std_final_test_accuracy,
    min(r.final_test_accuracy)               AS min_final_test_accuracy,
    max(r.final_test_accuracy)               AS max_final_test_accuracy,
    avg(r.final_training_time)               AS mean_final_training_time,
    stddev_samp(r.final_training_time)       AS std_final_training_time,
    min(r.final_training_time)               AS min_final_training_time,
    max(r.final_training_time)               AS max_final_training_time,
    any_value(r.trainable_parameters)        AS trainable_parameters
FROM runs AS r
GROUP BY r.hash, r.epochs, r.trained;
