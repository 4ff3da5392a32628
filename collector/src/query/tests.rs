use std::collections::BTreeSet;

use datafusion::common::ScalarValue;
use datafusion::prelude::{col, lit};

use super::table::{service_set, time_bounds};
use super::*;

/// A deterministic pseudo-random sequence for generated test data (the dense count's and the
/// grouped percentile's tests).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn ts(nanos: i64) -> datafusion::logical_expr::Expr {
    lit(ScalarValue::TimestampNanosecond(
        Some(nanos),
        Some("UTC".into()),
    ))
}

#[test]
fn statement_kinds_name_what_was_refused() {
    for (text, kind) in [
        ("CREATE TABLE t (a INT)", "CREATE TABLE"),
        (
            "create or replace temporary view v as select 1",
            "CREATE VIEW",
        ),
        ("DROP TABLE IF EXISTS t", "DROP TABLE"),
        ("INSERT INTO t VALUES (1)", "INSERT"),
        ("SET datafusion.execution.batch_size = 1", "SET"),
        ("", "an empty statement"),
    ] {
        assert_eq!(statement_kind(text), kind, "{text}");
    }
}

#[test]
fn time_bounds_cover_comparisons_between_and_or() {
    let start = || col("start_time");
    assert_eq!(time_bounds(&start().gt_eq(ts(10))), (Some(10), None));
    assert_eq!(time_bounds(&start().gt(ts(10))), (Some(11), None));
    assert_eq!(time_bounds(&start().lt(ts(10))), (None, Some(9)));
    assert_eq!(time_bounds(&ts(10).lt_eq(start())), (Some(10), None));
    assert_eq!(time_bounds(&start().eq(ts(7))), (Some(7), Some(7)));
    assert_eq!(
        time_bounds(&start().between(ts(1), ts(5))),
        (Some(1), Some(5))
    );
    assert_eq!(
        time_bounds(&start().not_between(ts(1), ts(5))),
        (None, None)
    );
    let seconds = lit(ScalarValue::TimestampSecond(Some(2), None));
    assert_eq!(
        time_bounds(&start().gt_eq(seconds)),
        (Some(2_000_000_000), None)
    );
    let both = start().gt_eq(ts(10)).and(start().lt(ts(20)));
    assert_eq!(time_bounds(&both), (Some(10), Some(19)));
    let either = start()
        .between(ts(1), ts(2))
        .or(start().between(ts(8), ts(9)));
    assert_eq!(time_bounds(&either), (Some(1), Some(9)));
    let open = start().gt(ts(1)).or(col("status").eq(lit(500)));
    assert_eq!(time_bounds(&open), (None, None));
    // A cast of the column says nothing about its partitions.
    let cast =
        datafusion::logical_expr::cast(start(), datafusion::arrow::datatypes::DataType::Date32);
    assert_eq!(
        time_bounds(&cast.gt_eq(lit(ScalarValue::Date32(Some(1))))),
        (None, None)
    );
}

#[test]
fn service_sets_come_from_equality_in_and_or() {
    let set = |names: &[&str]| Some(names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
    let service = || col("service");
    assert_eq!(service_set(&service().eq(lit("a"))), set(&["a"]));
    assert_eq!(service_set(&lit("a").eq(service())), set(&["a"]));
    assert_eq!(
        service_set(&service().in_list(vec![lit("a"), lit("b")], false)),
        set(&["a", "b"])
    );
    assert_eq!(service_set(&service().in_list(vec![lit("a")], true)), None);
    assert_eq!(
        service_set(&service().eq(lit("a")).or(service().eq(lit("c")))),
        set(&["a", "c"])
    );
    assert_eq!(
        service_set(&service().eq(lit("a")).or(col("status").eq(lit(1)))),
        None
    );
    assert_eq!(service_set(&service().not_eq(lit("a"))), None);
}

#[test]
fn query_args_defaults_match_the_flags() {
    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        query: QueryArgs,
    }
    use clap::Parser as _;
    assert_eq!(
        Cli::try_parse_from(["x"]).unwrap().query,
        QueryArgs::default()
    );
    let error = Cli::try_parse_from(["x", "--query-timeout", "0"]).unwrap_err();
    assert!(error.to_string().contains("query-timeout"), "{error}");
}
