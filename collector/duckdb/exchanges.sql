-- The `exchanges` table of a tapedeck store, read by DuckDB with the collector's manifest
-- protocol applied (collector/README.md, "Querying the bucket with DuckDB").
--
-- Set `root` to the store (the --store URL, or DATA/store) before running this file:
--   SET VARIABLE root = 's3://bucket/prefix';         -- with httpfs and an S3 secret
--   SET VARIABLE root = '/var/lib/tapedeck/store';     -- a local store
-- It defines the view `exchanges`: every visible row exactly once, with the partition columns
-- service, date and hour.

-- Every data file, in its partition folder.
SET VARIABLE tapedeck_files = (
    SELECT coalesce(list(file), []) FROM glob(getvariable('root') || '/exchanges/*/*/*/*.parquet')
);
-- Every manifest version.
SET VARIABLE tapedeck_states = (
    SELECT coalesce(list(file), []) FROM glob(getvariable('root') || '/exchanges/*/*/*/_state-*.json')
);

CREATE OR REPLACE TEMP TABLE tapedeck_files AS
SELECT file,
       regexp_extract(file, '^(.*)/[^/]*$', 1) AS dir,
       regexp_extract(file, '[^/]*$') AS name
FROM (SELECT unnest(getvariable('tapedeck_files')) AS file);

-- The newest manifest of each partition (none: the table is empty of states, which is fine).
CREATE OR REPLACE TEMP TABLE tapedeck_state AS
SELECT regexp_extract(filename, '^(.*)/[^/]*$', 1) AS dir, outputs, expired_at_ms
FROM read_json(
    CASE WHEN len(getvariable('tapedeck_states')) = 0
         THEN ['/dev/null'] ELSE getvariable('tapedeck_states') END,
    filename = true,
    format = 'auto',
    columns = {lease: 'JSON', outputs: 'JSON', expired_at_ms: 'UBIGINT'})
WHERE len(getvariable('tapedeck_states')) > 0
QUALIFY row_number() OVER (PARTITION BY dir ORDER BY filename DESC) = 1;

-- Committed compaction outputs.
CREATE OR REPLACE TEMP TABLE tapedeck_commits AS
SELECT s.dir, k AS output,
       CAST(json_extract(s.outputs, '$."' || k || '".inputs') AS VARCHAR[]) AS inputs,
       json_extract(s.outputs, '$."' || k || '".gc_at_ms') AS gc_at_ms
FROM tapedeck_state s, unnest(json_keys(s.outputs)) AS t(k);

-- Files a commit replaced: hidden once its output is listed, or once they are being deleted.
CREATE OR REPLACE TEMP TABLE tapedeck_hidden AS
SELECT c.dir, unnest(c.inputs) AS name
FROM tapedeck_commits c
WHERE (c.gc_at_ms IS NOT NULL AND json_type(c.gc_at_ms) <> 'NULL')
   OR EXISTS (SELECT 1 FROM tapedeck_files f WHERE f.dir = c.dir AND f.name = c.output);

SET VARIABLE tapedeck_visible = (
    SELECT coalesce(list(f.file ORDER BY f.file), [])
    FROM tapedeck_files f
    LEFT JOIN tapedeck_state s ON s.dir = f.dir
    WHERE s.expired_at_ms IS NULL
      AND (NOT f.name LIKE '%.compacted.parquet'
           OR EXISTS (SELECT 1 FROM tapedeck_commits c WHERE c.dir = f.dir AND c.output = f.name))
      AND NOT EXISTS (SELECT 1 FROM tapedeck_hidden h WHERE h.dir = f.dir AND h.name = f.name)
);

CREATE OR REPLACE TEMP VIEW exchanges AS
SELECT * FROM read_parquet(getvariable('tapedeck_visible'), hive_partitioning = true,
                           hive_types = {service: VARCHAR, date: VARCHAR, hour: VARCHAR});
