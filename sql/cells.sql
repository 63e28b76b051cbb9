-- The whole NAS-Bench-101 search space as `nasbench generate` enumerates it:
-- one row per unique cell, in the canonical (first-found) form the dataset
-- stores. Every `models` row of the release has its hash here.
CREATE TABLE cells (
    hash                 VARCHAR PRIMARY KEY,
    num_vertices         INTEGER NOT NULL,
    num_edges            INTEGER NOT NULL,
    adjacency            VARCHAR NOT NULL,
    ops                  VARCHAR[] NOT NULL,
    trainable_parameters BIGINT NOT NULL  -- of the dataset's network (3 stacks x 3 cells, 128 channels)
);
