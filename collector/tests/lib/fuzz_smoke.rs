//! The collector's fuzz targets (`fuzz/fuzz_targets/collector_*.rs`, run coverage-guided by
//! `./x fuzz`) as stable tests: each target's own property (the same file, included below) over
//! its checked-in corpus plus seeded mutations, so CI exercises them without a nightly build.

#[path = "../../../fuzz/properties/collector_ingest.rs"]
mod ingest;
#[path = "../../../fuzz/properties/smoke.rs"]
mod smoke;
#[path = "../../../fuzz/properties/collector_sql.rs"]
mod sql;
#[path = "../../../fuzz/properties/collector_wal.rs"]
mod wal;

#[test]
fn collector_ingest_fuzz_corpus_and_mutations() {
    let inputs = smoke::inputs(
        "collector_ingest",
        3000,
        21,
        &[b"\x00", b"\xff\xff\xff\xff\x0f"],
    );
    let accepted = inputs.iter().filter(|input| ingest::check(input)).count();
    // Not vacuous: many mutated batches still pass validation and go through the buffer.
    assert!(
        accepted >= 100,
        "only {accepted} of {} batches accepted",
        inputs.len()
    );
}

#[test]
fn collector_wal_fuzz_corpus_and_mutations() {
    let inputs = smoke::inputs("collector_wal", 400, 22, &[b"\x00\x00", b"\xff"]);
    let replayed = inputs.iter().filter(|input| wal::check(input)).count();
    assert!(
        replayed >= 40 && replayed < inputs.len(),
        "{replayed} of {} logs replayed: the cases must include both",
        inputs.len()
    );
}

#[test]
fn collector_sql_fuzz_corpus_and_mutations() {
    const SPLICE: &[&[u8]] = &[
        b"(",
        b")",
        b"'",
        b",",
        b" UNION ALL ",
        b" WHERE ",
        b" FROM exchanges ",
        b"/*",
        b"--",
        b";",
        b"$1",
        b"\\",
        b"\"",
    ];
    let inputs = smoke::inputs("collector_sql", 150, 23, SPLICE);
    let ran = inputs.iter().filter(|input| sql::check(input)).count();
    assert!(ran >= 20, "only {ran} of {} statements ran", inputs.len());
}

#[test]
fn collector_sql_refuses_writes_and_local_files() {
    for statement in [
        "INSERT INTO exchanges SELECT * FROM exchanges",
        "COPY exchanges TO '/tmp/tapedeck-fuzz-copy.parquet'",
        "COPY (SELECT 1) TO '/tmp/tapedeck-fuzz-copy.csv' STORED AS CSV",
        "CREATE EXTERNAL TABLE canary STORED AS CSV LOCATION '/tmp/tapedeck-fuzz-canary/secret.csv'",
        "CREATE TABLE t AS SELECT * FROM exchanges",
        "CREATE VIEW v AS SELECT 1",
        "DROP TABLE exchanges",
        "DELETE FROM exchanges",
        "UPDATE exchanges SET status = 1",
        "SET datafusion.execution.target_partitions = 1",
        "  insert into exchanges values (1)",
    ] {
        let error = sql::engine_error(statement).expect("a write is refused");
        assert!(
            matches!(
                error,
                tapedeck_collector::query::QueryError::ReadOnly { .. }
            ),
            "{statement:?}: {error}"
        );
        assert!(!sql::check_sql(statement));
    }
    for statement in [
        "SELECT * FROM '/tmp/tapedeck-fuzz-canary/secret.csv'",
        "SELECT * FROM 'file:///tmp/tapedeck-fuzz-canary/secret.json'",
        "SELECT * FROM read_csv('/tmp/tapedeck-fuzz-canary/secret.csv')",
    ] {
        assert!(
            sql::engine_error(statement).is_some(),
            "{statement:?} read a local file"
        );
        assert!(!sql::check_sql(statement));
    }
    assert!(sql::engine_error("SELECT count(*) FROM exchanges").is_none());
}
