-- Trained runs (nasbench train / nasbench worker). `nasbench ingest` runs
-- this file with the schema; `train` and `ingest-runs` run it on older
-- databases too. Each run's evaluation points are rows of `evaluations`
-- with source = run_id, beside the dataset's.
CREATE TABLE IF NOT EXISTS training_runs (
    run_id               VARCHAR PRIMARY KEY, -- also evaluations.source
    hash                 VARCHAR NOT NULL,    -- the cell (pruned), as models.hash
    epochs               INTEGER NOT NULL,    -- the budget (train_epochs)
    repeat               INTEGER NOT NULL,    -- 1-based (worker: unit i / cells + 1)
    config               VARCHAR NOT NULL,    -- the training config as JSON (config.py names)
    backend              VARCHAR NOT NULL,    -- 'cpu' or 'cuda'
    device               VARCHAR NOT NULL,    -- CPU model or GPU name
    seed                 UBIGINT NOT NULL,
    trainable_parameters BIGINT,
    started_at           TIMESTAMP NOT NULL,
    finished_at          TIMESTAMP,
    status               VARCHAR NOT NULL,    -- 'completed' or 'failed'
    error                VARCHAR,             -- why it failed (NaN loss after every attempt, ...)
    attempts             INTEGER NOT NULL
);
