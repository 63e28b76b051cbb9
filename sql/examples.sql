-- Everyday questions, one query each. Run them with
--   nasbench sql --db nasbench.duckdb -f sql/examples.sql
-- (the tests run every statement of this file on a database of the bundled sample).

-- 1. Rank cells by mean final validation accuracy at 108 epochs.
SELECT hash, repeats, mean_final_validation_accuracy, mean_final_test_accuracy, trainable_parameters
FROM model_stats
WHERE epochs = 108 AND NOT trained
ORDER BY mean_final_validation_accuracy DESC
LIMIT 10;

-- 2. The same with the table macro, by test accuracy.
SELECT * FROM top_cells(10, metric := 'test');

-- 3. Accuracy against parameters and training time (one point per cell).
SELECT trainable_parameters, mean_final_validation_accuracy, mean_final_training_time
FROM model_stats
WHERE epochs = 108 AND NOT trained
ORDER BY trainable_parameters;

-- 4. The best cell per vertex count.
SELECT num_vertices, arg_max(hash, mean_final_validation_accuracy) AS best_hash,
       max(mean_final_validation_accuracy) AS best_mean_validation
FROM model_stats JOIN models USING (hash)
WHERE epochs = 108 AND NOT trained
GROUP BY num_vertices
ORDER BY num_vertices;

-- 5. How accuracy grows with the budget, per cell.
SELECT hash, epochs, mean_final_validation_accuracy
FROM model_stats
WHERE NOT trained
ORDER BY hash, epochs;

-- 6. Look a cell up in any isomorphic form (the README cell with its
--    interior vertices listed in another order).
SELECT * FROM nasbench_query(
    '0111010 0000001 0000001 0000100 0000001 0000001 0000000',
    'input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output');

-- 7. De-duplicate a table of proposed cells up to isomorphism: isomorphic
--    proposals share a hash (NULL: the input does not reach the output);
--    join to see which are in the dataset.
CREATE OR REPLACE TEMP TABLE proposals AS
SELECT * FROM (VALUES
    (1, [[0,1,1,0],[0,0,0,1],[0,0,0,1],[0,0,0,0]], ['input','conv3x3-bn-relu','maxpool3x3','output']),
    (2, [[0,1,1,0],[0,0,0,1],[0,0,0,1],[0,0,0,0]], ['input','maxpool3x3','conv3x3-bn-relu','output']),
    (3, [[0,1,0,0],[0,0,1,0],[0,0,0,1],[0,0,0,0]], ['input','conv3x3-bn-relu','maxpool3x3','output']),
    (4, [[0,1,1,1,0,1,0],[0,0,0,0,0,0,1],[0,0,0,0,0,0,1],[0,0,0,0,1,0,0],[0,0,0,0,0,0,1],[0,0,0,0,0,0,1],[0,0,0,0,0,0,0]],
        ['input','conv1x1-bn-relu','conv3x3-bn-relu','conv3x3-bn-relu','conv3x3-bn-relu','maxpool3x3','output']),
    (5, [[0,1,0],[0,0,0],[0,0,0]], ['input','conv3x3-bn-relu','output'])
) AS p(id, matrix, ops);

SELECT nasbench_hash(matrix, ops) AS hash, list(id ORDER BY id) AS proposals,
       any_value(nasbench_params(matrix, ops)) AS trainable_parameters,
       bool_or(hash IN (SELECT hash FROM models)) AS in_dataset
FROM proposals
GROUP BY ALL
ORDER BY min(id);

-- 8. Which proposals are outside the dataset's domain, and why.
SELECT id, nasbench_is_valid(matrix, ops) AS valid, nasbench_check(matrix, ops) AS why
FROM proposals ORDER BY id;

-- 9. Runs trained by nasbench (nasbench train / worker) beside the
--    dataset's, per cell and budget.
SELECT hash, epochs, trained, repeats, mean_final_validation_accuracy, mean_final_test_accuracy
FROM model_stats
WHERE hash IN (SELECT hash FROM training_runs)
ORDER BY hash, epochs, trained;
