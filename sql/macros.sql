-- Table macros over the dataset; `nasbench ingest` creates them with the views.

-- The stored cell and its runs, as the original API's query looks a cell
-- up: by the hash of the pruned cell, in any isomorphic form.
--   SELECT * FROM nasbench_query('0111010 0000001 0000001 0000100 0000001 0000001 0000000',
--       'input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output');
CREATE OR REPLACE MACRO nasbench_query(cell_matrix, cell_ops, epochs := 108) AS TABLE
SELECT
    m.hash, m.adjacency, m.ops, m.trainable_parameters,
    r.epochs, r.repeat, r.source,
    r.halfway_training_time, r.halfway_train_accuracy, r.halfway_validation_accuracy, r.halfway_test_accuracy,
    r.final_training_time, r.final_train_accuracy, r.final_validation_accuracy, r.final_test_accuracy
FROM models AS m
JOIN runs AS r ON r.hash = m.hash AND r.epochs = epochs
WHERE m.hash = nasbench_hash(cell_matrix, cell_ops)
ORDER BY r.trained, r.source, r.repeat;

-- The n best cells at a budget by mean final accuracy over the repeats of
-- the dataset (trained := true: over runs trained by nasbench instead);
-- metric is 'validation' or 'test'.
--   SELECT * FROM top_cells(10);
--   SELECT * FROM top_cells(5, epochs := 36, metric := 'test');
CREATE OR REPLACE MACRO top_cells(n, epochs := 108, metric := 'validation', trained := false) AS TABLE
SELECT
    s.hash, m.num_vertices, m.num_edges, m.ops, s.repeats,
    CASE metric
        WHEN 'validation' THEN s.mean_final_validation_accuracy
        WHEN 'test' THEN s.mean_final_test_accuracy
        ELSE error('top_cells: metric must be ''validation'' or ''test'', got ''' || metric || '''')
    END AS mean_accuracy,
    s.mean_final_training_time,
    s.trainable_parameters
FROM model_stats AS s
JOIN models AS m USING (hash)
WHERE s.epochs = epochs AND s.trained = trained
ORDER BY mean_accuracy DESC, s.hash
LIMIT n;
