-- The primary key of `models`: one row per cell hash. It is added once the
-- table is loaded, because building the index in one pass over 423,624
-- hashes is faster than checking every appended row against it (about
-- 0.5 s of a 6 s ingest); a database that starts empty runs this at once.
ALTER TABLE models ADD PRIMARY KEY (hash);
