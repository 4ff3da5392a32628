//! `approx_percentile_cont` with a [`GroupsAccumulator`]: DataFusion 55's own function has none,
//! so a GROUP BY runs it through `GroupsAccumulatorAdapter` (per batch and group: take the rows,
//! convert, sort, merge into the group's t-digest, with allocations at every step).
//!
//! [`GroupedApproxPercentile`] is registered under the same name and delegates everything to
//! DataFusion's [`ApproxPercentileCont`] (signature, return type, state fields, argument checks,
//! the accumulator without groups) except the grouped accumulator, [`PercentileGroups`]: per
//! group a buffer of pending values and a [`TDigest`] (DataFusion's); a batch's values are
//! appended to their group's buffer, and a buffer is sorted and merged into its digest
//! (`merge_sorted_f64`, as DataFusion's accumulator does with a batch) when it holds
//! [`PENDING_PER_GROUP`] values, when all buffers together hold [`PENDING_TOTAL`], and before
//! the digests are read. State rows are exactly those of DataFusion's accumulator
//! (`TDigest::to_scalar_state`), so either side of a partial/final pair may be either
//! implementation.

use std::mem::size_of;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, ListArray, UInt64Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, UInt64Type};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::functions_aggregate::approx_percentile_cont::ApproxPercentileCont;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator, Signature,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion_functions_aggregate_common::tdigest::{Centroid, DEFAULT_MAX_SIZE, TDigest};

/// Values a group buffers before they are merged into its digest.
pub(crate) const PENDING_PER_GROUP: usize = 2048;
/// Values all groups together buffer before every buffer is merged.
pub(crate) const PENDING_TOTAL: usize = 1 << 20;

/// `approx_percentile_cont` with a grouped accumulator (see the module documentation).
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct GroupedApproxPercentile {
    inner: ApproxPercentileCont,
}

impl AggregateUDFImpl for GroupedApproxPercentile {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        self.inner.return_field(arg_fields)
    }

    fn is_nullable(&self) -> bool {
        self.inner.is_nullable()
    }

    fn accumulator(&self, args: AccumulatorArgs<'_>) -> Result<Box<dyn Accumulator>> {
        self.inner.accumulator(args)
    }

    fn state_fields(&self, args: StateFieldsArgs<'_>) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs<'_>) -> bool {
        // Whatever DataFusion's accumulator refuses (a type, a percentile), it refuses here too,
        // with its own message, when the plan asks for the plain accumulator.
        self.inner.accumulator(args.clone()).is_ok() && PercentileGroups::new(&args).is_ok()
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs<'_>,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        self.inner.accumulator(args.clone())?;
        Ok(Box::new(PercentileGroups::new(&args)?))
    }

    fn supports_within_group_clause(&self) -> bool {
        self.inner.supports_within_group_clause()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// `value` as an integer in the order of `f64::total_cmp`: the sign bit flipped for positive
/// values, every bit for negative ones.
#[inline]
fn order_key(value: f64) -> u64 {
    let bits = value.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

/// The inverse of [`order_key`].
#[inline]
fn from_order_key(key: u64) -> f64 {
    f64::from_bits(if key >> 63 == 1 {
        key & !(1 << 63)
    } else {
        !key
    })
}

/// A literal argument's value.
fn literal(expr: &Arc<dyn PhysicalExpr>) -> Option<&ScalarValue> {
    expr.downcast_ref::<Literal>().map(Literal::value)
}

/// Per group: a t-digest and the values not yet merged into it.
#[derive(Debug)]
pub(crate) struct PercentileGroups {
    percentile: f64,
    max_size: usize,
    return_type: DataType,
    digests: Vec<TDigest>,
    /// Pending values as [`order_key`]s: integers sort about twice as fast as
    /// `f64::total_cmp`, and in the same order.
    pending: Vec<Vec<u64>>,
    /// A flushed buffer turned back into floats.
    sorted: Vec<f64>,
    /// Values in `pending`.
    pending_values: usize,
    /// Bytes of the buffers' allocations.
    pending_bytes: usize,
    /// Bytes of the digests' centroids.
    centroid_bytes: usize,
}

impl PercentileGroups {
    /// The accumulator for `args` (checked by DataFusion's accumulator first).
    pub(crate) fn new(args: &AccumulatorArgs<'_>) -> Result<Self> {
        let percentile = match args.exprs.get(1).and_then(literal) {
            Some(ScalarValue::Float64(Some(p))) => *p,
            Some(ScalarValue::Float32(Some(p))) => f64::from(*p),
            _ => return plan_err!("approx_percentile_cont: the percentile must be a literal"),
        };
        if !(0.0..=1.0).contains(&percentile) {
            return plan_err!(
                "Percentile value must be between 0.0 and 1.0 inclusive, {percentile} is invalid"
            );
        }
        let descending = args
            .order_bys
            .first()
            .is_some_and(|sort| sort.options.descending);
        let percentile = if descending {
            1.0 - percentile
        } else {
            percentile
        };
        let max_size = match args.exprs.get(2) {
            None => DEFAULT_MAX_SIZE,
            Some(expr) => match literal(expr).and_then(|v| v.cast_to(&DataType::UInt64).ok()) {
                Some(ScalarValue::UInt64(Some(size))) if size > 0 => size as usize,
                _ => {
                    return plan_err!(
                        "approx_percentile_cont: the number of centroids must be a positive integer literal"
                    );
                }
            },
        };
        let return_type = args.expr_fields[0].data_type().clone();
        if !matches!(
            return_type,
            DataType::Float16 | DataType::Float32 | DataType::Float64
        ) {
            return plan_err!("approx_percentile_cont: unexpected input type {return_type}");
        }
        Ok(Self {
            percentile,
            max_size,
            return_type,
            digests: Vec::new(),
            pending: Vec::new(),
            sorted: Vec::new(),
            pending_values: 0,
            pending_bytes: 0,
            centroid_bytes: 0,
        })
    }

    fn resize(&mut self, groups: usize) {
        if self.digests.len() < groups {
            let max_size = self.max_size;
            self.digests.resize_with(groups, || TDigest::new(max_size));
            self.pending.resize_with(groups, Vec::new);
        }
    }

    #[inline]
    fn push(&mut self, group: usize, value: f64) {
        let buffer = &mut self.pending[group];
        let before = buffer.capacity();
        buffer.push(order_key(value));
        self.pending_bytes += (buffer.capacity() - before) * size_of::<u64>();
        self.pending_values += 1;
        if buffer.len() >= PENDING_PER_GROUP {
            self.flush(group);
        }
    }

    /// Merges group `group`'s pending values into its digest.
    fn flush(&mut self, group: usize) {
        let buffer = &mut self.pending[group];
        if buffer.is_empty() {
            return;
        }
        buffer.sort_unstable();
        self.sorted.clear();
        self.sorted
            .extend(buffer.iter().map(|&key| from_order_key(key)));
        let digest = &mut self.digests[group];
        let merged = digest.merge_sorted_f64(&self.sorted);
        self.centroid_bytes = (self.centroid_bytes + merged.size()).saturating_sub(digest.size());
        *digest = merged;
        self.pending_values -= buffer.len();
        buffer.clear();
    }

    fn flush_all(&mut self) {
        for group in 0..self.pending.len() {
            self.flush(group);
        }
    }

    /// Flushes and takes the digests of `emit_to`.
    fn take(&mut self, emit_to: EmitTo) -> Vec<TDigest> {
        match emit_to {
            EmitTo::All => self.flush_all(),
            EmitTo::First(n) => (0..n.min(self.pending.len())).for_each(|g| self.flush(g)),
        }
        let taken = emit_to.take_needed(&mut self.digests);
        drop(emit_to.take_needed(&mut self.pending));
        self.pending_values = self.pending.iter().map(Vec::len).sum();
        self.pending_bytes = self
            .pending
            .iter()
            .map(|buffer| buffer.capacity() * size_of::<u64>())
            .sum();
        self.centroid_bytes = self
            .digests
            .iter()
            .map(|d| d.size() - size_of::<TDigest>())
            .sum();
        taken
    }

    /// The values of `values` as f64.
    fn floats(values: &ArrayRef) -> Result<ArrayRef> {
        Ok(match values.data_type() {
            DataType::Float64 => Arc::clone(values),
            _ => cast(values, &DataType::Float64)?,
        })
    }

    /// State rows in the format of `TDigest::to_scalar_state`.
    fn state_arrays(digests: &[TDigest]) -> Vec<ArrayRef> {
        let mut offsets = Vec::with_capacity(digests.len() + 1);
        offsets.push(0i32);
        let mut centroids = Vec::new();
        for digest in digests {
            for centroid in digest.centroids() {
                centroids.push(centroid.mean());
                centroids.push(centroid.weight());
            }
            offsets.push(i32::try_from(centroids.len()).unwrap_or(i32::MAX));
        }
        let column = |f: fn(&TDigest) -> f64| -> ArrayRef {
            Arc::new(digests.iter().map(f).collect::<Float64Array>())
        };
        vec![
            Arc::new(
                digests
                    .iter()
                    .map(|d| d.max_size() as u64)
                    .collect::<UInt64Array>(),
            ),
            column(TDigest::sum),
            column(TDigest::count),
            column(TDigest::max),
            column(TDigest::min),
            Arc::new(ListArray::new(
                Arc::new(Field::new_list_field(DataType::Float64, true)),
                OffsetBuffer::new(offsets.into()),
                Arc::new(Float64Array::from(centroids)),
                None,
            )),
        ]
    }

    /// The digest of row `row` of state arrays.
    fn digest_at(states: &[ArrayRef], row: usize) -> Result<TDigest> {
        let float = |column: usize| states[column].as_primitive::<Float64Type>().value(row);
        let centroids = states[5].as_list::<i32>().value(row);
        let centroids = centroids.as_primitive::<Float64Type>().values();
        TDigest::try_from_parts(
            states[0].as_primitive::<UInt64Type>().value(row) as usize,
            float(1),
            float(2),
            float(3),
            float(4),
            centroids
                .chunks_exact(2)
                .map(|pair| Centroid::new(pair[0], pair[1]))
                .collect(),
        )
    }
}

impl GroupsAccumulator for PercentileGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let floats = Self::floats(&values[0])?;
        let floats = floats.as_primitive::<Float64Type>();
        let numbers = floats.values();
        match (floats.logical_nulls(), opt_filter) {
            (None, None) => {
                for (&group, &value) in group_indices.iter().zip(numbers.iter()) {
                    self.push(group, value);
                }
            }
            (nulls, filter) => {
                for (row, (&group, &value)) in group_indices.iter().zip(numbers.iter()).enumerate()
                {
                    let valid = nulls.as_ref().is_none_or(|n| n.is_valid(row));
                    let chosen = filter.is_none_or(|f| f.is_valid(row) && f.value(row));
                    if valid && chosen {
                        self.push(group, value);
                    }
                }
            }
        }
        if self.pending_values >= PENDING_TOTAL {
            self.flush_all();
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let percentile = self.percentile;
        let result: Float64Array = self
            .take(emit_to)
            .iter()
            .map(|digest| (digest.count() > 0.0).then(|| digest.estimate_quantile(percentile)))
            .collect();
        let result: ArrayRef = Arc::new(result);
        Ok(match self.return_type {
            DataType::Float64 => result,
            ref other => cast(&result, other)?,
        })
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let digests = self.take(emit_to);
        Ok(Self::state_arrays(&digests))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        if values.len() != 6 {
            return Err(DataFusionError::Internal(format!(
                "approx_percentile_cont: expected 6 state columns, got {}",
                values.len()
            )));
        }
        self.resize(total_num_groups);
        // As DataFusion's accumulator: a group's incoming digests of one batch, then its own,
        // merged in one go.
        let mut incoming: Vec<(usize, TDigest)> = Vec::with_capacity(group_indices.len());
        for (row, &group) in group_indices.iter().enumerate() {
            let digest = Self::digest_at(values, row)?;
            if digest.count() > 0.0 {
                incoming.push((group, digest));
            }
        }
        incoming.sort_by_key(|(group, _)| *group);
        for run in incoming.chunk_by(|a, b| a.0 == b.0) {
            let group = run[0].0;
            let own = &mut self.digests[group];
            let merged = if own.count() > 0.0 {
                TDigest::merge_digests(run.iter().map(|(_, d)| d).chain([&*own]))
            } else {
                TDigest::merge_digests(run.iter().map(|(_, d)| d))
            };
            self.centroid_bytes = (self.centroid_bytes + merged.size()).saturating_sub(own.size());
            *own = merged;
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let floats = Self::floats(&values[0])?;
        let floats = floats.as_primitive::<Float64Type>();
        let digests: Vec<TDigest> = (0..floats.len())
            .map(|row| {
                let chosen = floats.is_valid(row)
                    && opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
                let empty = TDigest::new(self.max_size);
                if chosen {
                    empty.merge_sorted_f64(&[floats.value(row)])
                } else {
                    empty
                }
            })
            .collect();
        Ok(Self::state_arrays(&digests))
    }

    fn size(&self) -> usize {
        size_of::<Self>()
            + self.digests.capacity() * size_of::<TDigest>()
            + self.pending.capacity() * size_of::<Vec<u64>>()
            + self.sorted.capacity() * size_of::<f64>()
            + self.pending_bytes
            + self.centroid_bytes
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Float64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::datasource::MemTable;
    use datafusion::execution::FunctionRegistry as _;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::logical_expr::AggregateUDF;
    use datafusion::physical_expr::expressions::{Column, lit};
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    use crate::query::tests::Rng;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("g", DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
        ]))
    }

    /// Groups: `big` (30 000 values, heavy tail), `mid` (5 000), `small-*` (at most 60 values,
    /// where the digest keeps every value), `one` (one row), `nulls` (only NULL values), and a
    /// NULL group; some values NULL everywhere.
    fn partitions() -> Vec<Vec<RecordBatch>> {
        let mut rng = Rng(11);
        let mut rows: Vec<(Option<String>, Option<f64>)> = Vec::new();
        for _ in 0..30_000 {
            let r = rng.next();
            let x = (r % 1000) as f64 + if r.is_multiple_of(97) { 1e6 } else { 0.0 };
            rows.push((Some("big".into()), (!r.is_multiple_of(13)).then_some(x)));
        }
        for _ in 0..5_000 {
            let r = rng.next();
            rows.push((Some("mid".into()), Some((r % 50_000) as f64 / 7.0)));
        }
        for group in 0..40 {
            for _ in 0..(rng.next() % 60 + 1) {
                let r = rng.next();
                rows.push((
                    Some(format!("small-{group}")),
                    (!r.is_multiple_of(11)).then_some((r % 500) as f64 - 100.0),
                ));
            }
        }
        rows.push((Some("one".into()), Some(42.5)));
        for _ in 0..10 {
            rows.push((Some("nulls".into()), None));
            rows.push((None, Some(rng.next() as f64)));
        }
        // Shuffle, then cut into 3 partitions of batches of 700.
        for i in (1..rows.len()).rev() {
            rows.swap(i, rng.next() as usize % (i + 1));
        }
        let batches: Vec<RecordBatch> = rows
            .chunks(700)
            .map(|chunk| {
                RecordBatch::try_new(
                    schema(),
                    vec![
                        Arc::new(chunk.iter().map(|r| r.0.clone()).collect::<StringArray>()),
                        Arc::new(chunk.iter().map(|r| r.1).collect::<Float64Array>()),
                    ],
                )
                .unwrap()
            })
            .collect();
        let mut parts = vec![Vec::new(), Vec::new(), Vec::new()];
        for (i, batch) in batches.into_iter().enumerate() {
            parts[i % 3].push(batch);
        }
        parts
    }

    fn context(grouped: bool) -> SessionContext {
        let config = SessionConfig::new().with_target_partitions(4);
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        if grouped {
            state
                .register_udaf(Arc::new(AggregateUDF::new_from_impl(
                    GroupedApproxPercentile::default(),
                )))
                .unwrap();
        }
        let context = SessionContext::new_with_state(state);
        let table = MemTable::try_new(schema(), partitions()).unwrap();
        context.register_table("t", Arc::new(table)).unwrap();
        context
    }

    /// Rows of (group, one column per aggregate).
    async fn rows(context: &SessionContext, sql: &str) -> Vec<(Option<String>, Vec<Option<f64>>)> {
        let batches = context.sql(sql).await.unwrap().collect().await.unwrap();
        let mut out = Vec::new();
        for batch in batches {
            let groups = batch.column(0).as_string::<i32>();
            for row in 0..batch.num_rows() {
                let values = (1..batch.num_columns())
                    .map(|c| {
                        let column = cast(batch.column(c), &DataType::Float64).unwrap();
                        let column = column.as_primitive::<Float64Type>();
                        column.is_valid(row).then(|| column.value(row))
                    })
                    .collect();
                out.push((
                    groups.is_valid(row).then(|| groups.value(row).to_string()),
                    values,
                ));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The exact values of each group, sorted.
    fn exact() -> std::collections::BTreeMap<Option<String>, Vec<f64>> {
        let mut groups: std::collections::BTreeMap<Option<String>, Vec<f64>> = Default::default();
        for batch in partitions().into_iter().flatten() {
            let g = batch.column(0).as_string::<i32>();
            let x = batch.column(1).as_primitive::<Float64Type>();
            for row in 0..batch.num_rows() {
                let values = groups
                    .entry(g.is_valid(row).then(|| g.value(row).to_string()))
                    .or_default();
                if x.is_valid(row) {
                    values.push(x.value(row));
                }
            }
        }
        for values in groups.values_mut() {
            values.sort_by(f64::total_cmp);
        }
        groups
    }

    const QUERY: &str = "SELECT g, approx_percentile_cont(x, 0.99), approx_percentile_cont(x, 0.5), \
        approx_percentile_cont(x, 0.1, 50), \
        approx_percentile_cont(0.25) WITHIN GROUP (ORDER BY x DESC), \
        approx_percentile_cont(CAST(x AS REAL), 0.9) \
        FROM t GROUP BY g";
    const QUANTILES: [f64; 5] = [0.99, 0.5, 0.1, 0.75, 0.9];

    #[tokio::test]
    async fn grouped_percentiles_match_datafusion_within_the_digest_tolerance() {
        let ours = rows(&context(true), QUERY).await;
        let theirs = rows(&context(false), QUERY).await;
        let exact = exact();
        assert_eq!(ours.len(), exact.len());
        assert_eq!(ours.len(), theirs.len());
        for ((group, mine), (their_group, builtin)) in ours.iter().zip(&theirs) {
            assert_eq!(group, their_group);
            let values = &exact[group];
            if values.is_empty() {
                assert!(mine.iter().all(Option::is_none), "{group:?}: {mine:?}");
                assert_eq!(mine, builtin, "{group:?}");
                continue;
            }
            if values.len() <= 50 {
                // Every value is its own centroid: the same answer, whatever the merge order.
                assert_eq!(mine, builtin, "{group:?}");
                continue;
            }
            for ((q, value), other) in QUANTILES.iter().zip(mine).zip(builtin) {
                // Where the estimate falls among the exact values: within 1 % of the
                // requested rank, as DataFusion's own.
                let rank = |v: f64| values.partition_point(|x| *x < v) as f64 / values.len() as f64;
                let (value, other) = (value.unwrap(), other.unwrap());
                let tolerance = 0.01 + 1.0 / values.len() as f64;
                let low = values.partition_point(|x| *x < value) as f64 / values.len() as f64;
                let high = values.partition_point(|x| *x <= value) as f64 / values.len() as f64;
                assert!(
                    low - tolerance <= *q && *q <= high + tolerance,
                    "{group:?} q={q}: ours {value} at rank {}..{high}, DataFusion {other} at {}",
                    low,
                    rank(other)
                );
            }
        }
        let one = ours
            .iter()
            .find(|(g, _)| g.as_deref() == Some("one"))
            .unwrap();
        assert!(one.1.iter().all(|v| *v == Some(42.5)), "{one:?}");
    }

    fn accumulator_args<'a>(
        schema: &'a Schema,
        exprs: &'a [Arc<dyn PhysicalExpr>],
        fields: &'a [FieldRef],
    ) -> AccumulatorArgs<'a> {
        AccumulatorArgs {
            return_field: Arc::new(Field::new("p", DataType::Float64, true)),
            schema,
            ignore_nulls: false,
            order_bys: &[],
            is_reversed: false,
            name: "approx_percentile_cont(x, 0.9)",
            is_distinct: false,
            exprs,
            expr_fields: fields,
        }
    }

    #[test]
    fn states_interoperate_with_datafusions_accumulator() {
        let schema = Schema::new(vec![Field::new("x", DataType::Float64, true)]);
        let exprs: Vec<Arc<dyn PhysicalExpr>> = vec![
            Arc::new(Column::new("x", 0)),
            lit(ScalarValue::Float64(Some(0.9))),
        ];
        let fields = vec![Arc::new(schema.field(0).clone())];
        let args = accumulator_args(&schema, &exprs, &fields);
        let udaf = GroupedApproxPercentile::default();
        assert!(udaf.groups_accumulator_supported(args.clone()));

        let mut rng = Rng(5);
        let values: ArrayRef = Arc::new(
            (0..20_000)
                .map(|i| (i % 17 != 0).then(|| (rng.next() % 10_000) as f64))
                .collect::<Float64Array>(),
        );
        // Three groups; group 2 gets only NULLs.
        let groups: Vec<usize> = (0..20_000)
            .map(|i| if i % 17 == 0 { 2 } else { i % 2 })
            .collect();
        let mut ours = udaf.create_groups_accumulator(args.clone()).unwrap();
        ours.update_batch(&[Arc::clone(&values)], &groups, None, 3)
            .unwrap();
        let state = ours.state(EmitTo::All).unwrap();
        assert_eq!(state.len(), 6);
        assert_eq!(state[0].len(), 3);

        // DataFusion's accumulator reads our state rows …
        for group in 0..3 {
            let mut theirs = ApproxPercentileCont::new()
                .accumulator(args.clone())
                .unwrap();
            let rows: Vec<ArrayRef> = state.iter().map(|c| c.slice(group, 1)).collect();
            theirs.merge_batch(&rows).unwrap();
            let mut direct = ApproxPercentileCont::new()
                .accumulator(args.clone())
                .unwrap();
            let picked: Float64Array = values
                .as_primitive::<Float64Type>()
                .iter()
                .zip(&groups)
                .filter(|(_, g)| **g == group)
                .map(|(v, _)| v)
                .collect();
            direct.update_batch(&[Arc::new(picked)]).unwrap();
            let (merged, direct) = (theirs.evaluate().unwrap(), direct.evaluate().unwrap());
            match (merged, direct) {
                (ScalarValue::Float64(Some(a)), ScalarValue::Float64(Some(b))) => {
                    assert!((a - b).abs() <= 100.0, "group {group}: {a} vs {b}")
                }
                (a, b) => assert_eq!(a, b, "group {group}"),
            }
        }

        // … and ours reads DataFusion's, merged into groups of its own (the final phase).
        let mut theirs = ApproxPercentileCont::new()
            .accumulator(args.clone())
            .unwrap();
        theirs
            .update_batch(&[Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0]))])
            .unwrap();
        let their_state: Vec<ArrayRef> = theirs
            .state()
            .unwrap()
            .into_iter()
            .map(|v| v.to_array().unwrap())
            .collect();
        let mut final_phase = udaf.create_groups_accumulator(args.clone()).unwrap();
        final_phase.merge_batch(&their_state, &[1], 2).unwrap();
        final_phase
            .update_batch(&[Arc::new(Float64Array::from(vec![5.0]))], &[1], None, 2)
            .unwrap();
        let result = final_phase.evaluate(EmitTo::All).unwrap();
        let result = result.as_primitive::<Float64Type>();
        assert!(result.is_null(0), "group 0 saw nothing");
        let mut exact = ApproxPercentileCont::new()
            .accumulator(args.clone())
            .unwrap();
        exact
            .update_batch(&[Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0, 5.0]))])
            .unwrap();
        assert_eq!(
            ScalarValue::Float64(Some(result.value(1))),
            exact.evaluate().unwrap()
        );

        // Rows turned into states one by one (skipped partial aggregation) merge to the same
        // digest as the rows themselves, for a group small enough to be exact.
        let small: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(3.0),
            None,
            Some(1.0),
            Some(7.0),
            Some(2.0),
        ]));
        let filter = BooleanArray::from(vec![Some(true), Some(true), None, Some(true), Some(true)]);
        let direct_state = final_phase
            .convert_to_state(&[Arc::clone(&small)], Some(&filter))
            .unwrap();
        let mut via_state = udaf.create_groups_accumulator(args.clone()).unwrap();
        via_state.merge_batch(&direct_state, &[0; 5], 1).unwrap();
        let mut via_rows = udaf.create_groups_accumulator(args.clone()).unwrap();
        via_rows
            .update_batch(&[small], &[0; 5], Some(&filter), 1)
            .unwrap();
        assert_eq!(
            &via_state.evaluate(EmitTo::All).unwrap(),
            &via_rows.evaluate(EmitTo::All).unwrap()
        );
    }

    #[test]
    fn bad_percentiles_are_refused_as_datafusion_refuses_them() {
        let schema = Schema::new(vec![Field::new("x", DataType::Float64, true)]);
        let fields = vec![Arc::new(schema.field(0).clone())];
        for bad in [
            lit(ScalarValue::Float64(Some(1.5))),
            lit(ScalarValue::Float64(None)),
            Arc::new(Column::new("x", 0)) as Arc<dyn PhysicalExpr>,
        ] {
            let exprs = vec![Arc::new(Column::new("x", 0)) as Arc<dyn PhysicalExpr>, bad];
            let args = accumulator_args(&schema, &exprs, &fields);
            let udaf = GroupedApproxPercentile::default();
            assert!(!udaf.groups_accumulator_supported(args.clone()));
            let Err(theirs) = ApproxPercentileCont::new().accumulator(args.clone()) else {
                panic!("DataFusion accepted {:?}", exprs[1]);
            };
            let Err(ours) = udaf.create_groups_accumulator(args) else {
                panic!("accepted {:?}", exprs[1]);
            };
            assert_eq!(ours.to_string(), theirs.to_string());
        }
    }

    #[test]
    fn order_keys_sort_as_total_cmp() {
        let mut values = vec![
            3.5,
            -0.0,
            0.0,
            -1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
            1e-310,
            -1e-310,
            42.0,
            -42.0,
        ];
        let mut keys: Vec<u64> = values.iter().map(|&v| order_key(v)).collect();
        keys.sort_unstable();
        values.sort_by(f64::total_cmp);
        let back: Vec<u64> = keys.iter().map(|&k| from_order_key(k).to_bits()).collect();
        let expected: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
        assert_eq!(back, expected);
    }

    #[test]
    fn big_groups_flush_and_memory_is_accounted() {
        let schema = Schema::new(vec![Field::new("x", DataType::Float64, true)]);
        let exprs: Vec<Arc<dyn PhysicalExpr>> = vec![
            Arc::new(Column::new("x", 0)),
            lit(ScalarValue::Float64(Some(0.5))),
        ];
        let fields = vec![Arc::new(schema.field(0).clone())];
        let args = accumulator_args(&schema, &exprs, &fields);
        let mut groups = PercentileGroups::new(&args).unwrap();
        let empty = groups.size();
        let n = PENDING_PER_GROUP * 3 + 17;
        let values: ArrayRef = Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64)));
        groups
            .update_batch(&[values], &vec![0; n], None, 1)
            .unwrap();
        assert_eq!(groups.pending_values, 17);
        assert_eq!(groups.digests[0].count(), (n - 17) as f64);
        assert!(groups.size() > empty);
        let median = groups.evaluate(EmitTo::All).unwrap();
        let median = median.as_primitive::<Float64Type>().value(0);
        assert!(
            (median - n as f64 / 2.0).abs() < n as f64 * 0.01,
            "{median}"
        );
        assert_eq!(groups.pending_values, 0);
    }
}
