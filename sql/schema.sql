-- The NAS-Bench-101 dataset as two tables. `nasbench ingest` runs this file
-- on an empty database, bulk-loads both tables, then runs keys.sql and
-- views.sql.

-- One row per cell (unique module hash), as the release stores it: the
-- first record seen for a hash gives its matrix, ops and parameter count.
CREATE TABLE models (
    hash                 VARCHAR NOT NULL,    -- 32 lowercase hex digits, the dataset key
                                              -- (the primary key: see keys.sql)
    num_vertices         INTEGER NOT NULL,    -- 2..7, input and output included
    num_edges            INTEGER NOT NULL,
    adjacency            VARCHAR NOT NULL,    -- row-major 0/1 string of length num_vertices^2
    matrix               INTEGER[][] NOT NULL, -- the same matrix as a nested list
    ops                  VARCHAR[] NOT NULL,  -- op names, 'input' first and 'output' last
    trainable_parameters BIGINT               -- NULL where the record has none
);

-- One row per evaluation point of every training run; nothing is dropped.
-- A run is (hash, epochs, repeat); each has three points.
CREATE TABLE evaluations (
    hash                VARCHAR NOT NULL,
    epochs              INTEGER NOT NULL,  -- the training budget: 4, 12, 36 or 108
    repeat              INTEGER NOT NULL,  -- 1..3, in file order within (hash, epochs)
    point               INTEGER NOT NULL,  -- 0 = step 0, 1 = halfway, 2 = end of training
    current_epoch       DOUBLE,
    training_time       DOUBLE,            -- seconds of training up to this point
    train_accuracy      DOUBLE,
    validation_accuracy DOUBLE,
    test_accuracy       DOUBLE,
    checkpoint_path     VARCHAR,
    total_time          DOUBLE,            -- per run (repeated on its three points)
    source              VARCHAR NOT NULL   -- 'nasbench-101', 'synthetic', or a training run id
);
-- Absent proto2 fields are NULL, never 0.

-- Where the data came from: one row per ingested file.
CREATE TABLE ingests (
    file         VARCHAR NOT NULL,   -- the file, as given to nasbench ingest
    bytes        BIGINT NOT NULL,
    records      BIGINT NOT NULL,    -- records read (skipped ones included)
    budget_order INTEGER[] NOT NULL, -- budgets in order of first appearance in the file
                                     -- (the original API prints its set of budgets in
                                     -- an order that depends on it)
    ingested_at  TIMESTAMP NOT NULL
);
