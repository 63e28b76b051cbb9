-- The best cells at 108 epochs by mean final validation accuracy over the
-- three repeats (what `nasbench demo` prints).
SELECT
    s.hash,
    m.num_vertices,
    m.num_edges,
    s.repeats,
    round(s.mean_final_validation_accuracy, 4) AS mean_validation,
    round(s.std_final_validation_accuracy, 4)  AS std_validation,
    round(s.mean_final_test_accuracy, 4)       AS mean_test,
    round(s.mean_final_training_time, 1)       AS mean_train_seconds,
    s.trainable_parameters
FROM model_stats AS s
JOIN models AS m USING (hash)
WHERE s.epochs = 108 AND NOT s.trained
ORDER BY s.mean_final_validation_accuracy DESC, s.hash
LIMIT 10
