//! Direct-indexed grouping for `count` by one small integer key (what DuckDB calls a perfect-hash
//! group by): `SELECT status, count(*) FROM exchanges GROUP BY status`.
//!
//! [`DenseGroupCount`] is a physical optimizer rule that replaces an [`AggregateExec`] in
//! `Partial` mode whose GROUP BY is one integer column and whose aggregates are all plain
//! `count(expr)` (no DISTINCT, FILTER or ORDER BY) by a [`DenseCountExec`] with the same output
//! schema and partitioning, so the final aggregate above it merges its rows unchanged.
//!
//! [`DenseCountExec`] counts keys inside a window of [`WINDOW`] values (starting at 0 when the
//! first keys it sees fit there, else at the smallest of them) in flat arrays indexed by
//! `key - base`; the NULL key has a slot of its own; any other key goes to a hash map. The hash
//! map is bounded: when it holds [`OVERFLOW_CAP`] keys their partial counts are sent on as one
//! batch and the map starts again (the final aggregate adds up the same key coming more than
//! once, exactly as it does for DataFusion's own partial aggregate when it emits early), so
//! memory stays bounded whatever the data; what it holds is reserved in the query's memory pool.
//! `count(expr)` counts the rows whose `expr` is not NULL: per aggregate the NULLs are counted
//! per key and subtracted from the key's rows.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use datafusion::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, Int64Array, PrimitiveArray, RecordBatch,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{
    DataType, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, InputOrderMode,
    PlanProperties, ReplaceChildrenOptions,
};
use futures::{Stream, StreamExt};

/// Keys counted in flat arrays: `base..base + WINDOW`.
pub(crate) const WINDOW: usize = 1024;
/// Keys outside the window held at once before their counts are sent on.
pub(crate) const OVERFLOW_CAP: usize = 64 * 1024;
/// The slot of the NULL key.
const NULL_SLOT: usize = WINDOW;
/// Copies of the window's row counters, used in turn: consecutive rows with the same key
/// (most of them) then increment different memory, so the increments do not wait on each other.
const LANES: usize = 4;
/// In a lane, the counter of rows whose key is outside the window (counted again by key).
const SPILL: usize = WINDOW;

/// The rule: see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct DenseGroupCount;

impl PhysicalOptimizerRule for DenseGroupCount {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            Ok(match DenseCountExec::replacing(&node)? {
                Some(dense) => Transformed::yes(Arc::new(dense) as Arc<dyn ExecutionPlan>),
                None => Transformed::no(node),
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "dense_group_count"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Counts per small integer key: replaces a partial `count` aggregate (see the module
/// documentation).
#[derive(Debug)]
pub(crate) struct DenseCountExec {
    /// The aggregate it replaces: its input, schema, properties and expressions.
    aggregate: Arc<dyn ExecutionPlan>,
    key: Arc<dyn PhysicalExpr>,
    /// The argument of each `count`, in output order.
    counted: Vec<Arc<dyn PhysicalExpr>>,
    metrics: ExecutionPlanMetricsSet,
}

impl DenseCountExec {
    /// The replacement for `plan`, if it is an aggregate the rule applies to.
    pub(crate) fn replacing(plan: &Arc<dyn ExecutionPlan>) -> Result<Option<Self>> {
        let Some(aggregate) = plan.downcast_ref::<AggregateExec>() else {
            return Ok(None);
        };
        let group_by = aggregate.group_expr();
        if *aggregate.mode() != AggregateMode::Partial
            || group_by.has_grouping_set()
            || group_by.expr().len() != 1
            || aggregate.limit_options().is_some()
            || !aggregate.dynamic_expressions_produced().is_empty()
            || *aggregate.input_order_mode() != InputOrderMode::Linear
            || aggregate.properties().output_ordering().is_some()
            || aggregate.filter_expr().iter().any(Option::is_some)
        {
            return Ok(None);
        }
        let mut counted = Vec::with_capacity(aggregate.aggr_expr().len());
        for function in aggregate.aggr_expr() {
            let arguments = function.expressions();
            if function.fun().name() != "count"
                || function.is_distinct()
                || !function.order_bys().is_empty()
                || arguments.len() != 1
            {
                return Ok(None);
            }
            counted.push(Arc::clone(&arguments[0]));
        }
        let key = Arc::clone(&group_by.expr()[0].0);
        let input_schema = aggregate.input_schema();
        if !is_key_type(&key.data_type(&input_schema)?) {
            return Ok(None);
        }
        // The output must be exactly the aggregate's: one key column, then one Int64 count each.
        let schema = aggregate.schema();
        if schema.fields().len() != 1 + counted.len()
            || schema.fields()[1..]
                .iter()
                .any(|field| field.data_type() != &DataType::Int64)
            || !is_key_type(schema.field(0).data_type())
        {
            return Ok(None);
        }
        Ok(Some(Self {
            aggregate: Arc::clone(plan),
            key,
            counted,
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn input(&self) -> &Arc<dyn ExecutionPlan> {
        self.aggregate.children()[0]
    }
}

fn is_key_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

impl DisplayAs for DenseCountExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let schema = self.aggregate.schema();
        let counts: Vec<&str> = schema.fields()[1..]
            .iter()
            .map(|field| field.name().as_str())
            .collect();
        write!(
            f,
            "DenseCountExec: key={}, counts=[{}], window={WINDOW}",
            self.key,
            counts.join(", ")
        )
    }
}

impl ExecutionPlan for DenseCountExec {
    fn name(&self) -> &'static str {
        "DenseCountExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.aggregate.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.input()]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.aggregate.apply_expressions(f)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let aggregate = Arc::clone(&self.aggregate).replace_children(children, options)?;
        match Self::replacing(&aggregate)? {
            Some(dense) => Ok(Arc::new(dense)),
            None => Ok(aggregate),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input().execute(partition, Arc::clone(&context))?;
        let reservation = MemoryConsumer::new(format!("DenseCountExec[{partition}]"))
            .register(context.memory_pool());
        let counts = Counts::new(self.counted.len());
        reservation.try_grow(counts.size())?;
        Ok(Box::pin(DenseCountStream {
            input,
            schema: self.aggregate.schema(),
            key: Arc::clone(&self.key),
            counted: self.counted.clone(),
            counts,
            reservation,
            baseline: BaselineMetrics::new(&self.metrics, partition),
            done: false,
        }))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// An integer Arrow type as a key: `wide` maps its values one to one into `i64` (wrapping for
/// `u64`), `narrow` maps them back.
trait Key: ArrowPrimitiveType {
    fn wide(value: Self::Native) -> i64;
    fn narrow(key: i64) -> Self::Native;
}

macro_rules! key_types {
    ($($arrow:ty => $native:ty),*) => {$(
        impl Key for $arrow {
            #[inline]
            fn wide(value: $native) -> i64 {
                value as i64
            }
            #[inline]
            fn narrow(key: i64) -> $native {
                key as $native
            }
        }
    )*};
}

key_types!(
    Int8Type => i8, Int16Type => i16, Int32Type => i32, Int64Type => i64,
    UInt8Type => u8, UInt16Type => u16, UInt32Type => u32, UInt64Type => u64
);

/// Calls `$body` with `$t` bound to the key type of `$data_type`: arrow's own dispatch over the
/// eight integer types (`downcast_integer!`), the same set [`Key`] is implemented for.
macro_rules! with_key_type {
    ($data_type:expr, $t:ident, $body:expr) => {{
        macro_rules! bind {
            ($key:ty) => {{
                type $t = $key;
                $body
            }};
        }
        datafusion::arrow::array::downcast_integer! {
            $data_type => (bind),
            other => {
                return Err(DataFusionError::Internal(format!(
                    "dense count: {other} is not an integer key type"
                )))
            }
        }
    }};
}

/// Rows and NULLs per key of one partition.
#[derive(Debug)]
struct Counts {
    /// The first key of the window, set by the first batch with a key.
    base: Option<i64>,
    /// Rows per slot: `0..WINDOW` the window, [`NULL_SLOT`] the NULL key, then the keys of
    /// `overflow`.
    rows: Vec<u64>,
    /// More rows per window slot, counted by batches without NULL keys; added to `rows` at the
    /// end.
    lanes: Box<[[u64; WINDOW + 1]; LANES]>,
    /// Per `count`, the rows whose argument is NULL, per slot.
    nulls: Vec<Vec<u64>>,
    /// Keys outside the window and their slots.
    overflow: HashMap<i64, usize>,
}

impl Counts {
    fn new(aggregates: usize) -> Self {
        Self {
            base: None,
            rows: vec![0; WINDOW + 1],
            lanes: Box::new([[0; WINDOW + 1]; LANES]),
            nulls: vec![vec![0; WINDOW + 1]; aggregates],
            overflow: HashMap::new(),
        }
    }

    /// Bytes held.
    fn size(&self) -> usize {
        let slots = self.rows.capacity() + self.nulls.iter().map(Vec::capacity).sum::<usize>();
        (slots + LANES * (WINDOW + 1)) * size_of::<u64>()
            + self.overflow.capacity() * (size_of::<(i64, usize)>() + 1)
    }

    /// The window starts at 0 when the first keys fit there (HTTP statuses), else at the
    /// smallest of them.
    fn choose_base(values: impl Iterator<Item = i64>) -> Option<i64> {
        let (low, high) = values.fold(None, |range: Option<(i64, i64)>, key| match range {
            None => Some((key, key)),
            Some((low, high)) => Some((low.min(key), high.max(key))),
        })?;
        Some(if low >= 0 && high < WINDOW as i64 {
            0
        } else {
            low
        })
    }

    #[inline]
    fn slot(&mut self, base: i64, key: i64) -> usize {
        let offset = key.wrapping_sub(base) as u64;
        if offset < WINDOW as u64 {
            offset as usize
        } else {
            self.overflow_slot(key)
        }
    }

    fn overflow_slot(&mut self, key: i64) -> usize {
        match self.overflow.entry(key) {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                let slot = self.rows.len();
                entry.insert(slot);
                self.rows.push(0);
                for nulls in &mut self.nulls {
                    nulls.push(0);
                }
                slot
            }
        }
    }

    /// Counts one batch: `keys` and, per `count`, the NULLs of its argument (`None`: none).
    fn update<T: Key>(&mut self, keys: &PrimitiveArray<T>, nulls: &[Option<NullBuffer>]) {
        let base = match self.base {
            Some(base) => base,
            None => match Self::choose_base(keys.iter().flatten().map(T::wide)) {
                Some(base) => {
                    self.base = Some(base);
                    base
                }
                // Only NULL keys so far: any base will do for them.
                None => 0,
            },
        };
        let values = keys.values();
        match keys.logical_nulls() {
            None => {
                let lanes = &mut *self.lanes;
                let lane_slot = |value: T::Native| {
                    let offset = T::wide(value).wrapping_sub(base) as u64;
                    if offset < WINDOW as u64 {
                        offset as usize
                    } else {
                        SPILL
                    }
                };
                let mut chunks = values.chunks_exact(LANES);
                for chunk in &mut chunks {
                    for (lane, &value) in lanes.iter_mut().zip(chunk) {
                        lane[lane_slot(value)] += 1;
                    }
                }
                for &value in chunks.remainder() {
                    lanes[0][lane_slot(value)] += 1;
                }
                let spilled: u64 = lanes.iter().map(|lane| lane[SPILL]).sum();
                if spilled > 0 {
                    for lane in lanes.iter_mut() {
                        lane[SPILL] = 0;
                    }
                    for &value in values.iter() {
                        let key = T::wide(value);
                        if key.wrapping_sub(base) as u64 >= WINDOW as u64 {
                            let slot = self.overflow_slot(key);
                            self.rows[slot] += 1;
                        }
                    }
                }
            }
            Some(valid) => {
                for (i, &value) in values.iter().enumerate() {
                    let slot = if valid.is_valid(i) {
                        self.slot(base, T::wide(value))
                    } else {
                        NULL_SLOT
                    };
                    self.rows[slot] += 1;
                }
            }
        }
        let key_valid = keys.logical_nulls();
        for (aggregate, argument_nulls) in nulls.iter().enumerate() {
            let Some(argument_nulls) = argument_nulls else {
                continue;
            };
            for i in argument_nulls
                .iter()
                .enumerate()
                .filter_map(|(i, v)| (!v).then_some(i))
            {
                let slot = match &key_valid {
                    Some(valid) if !valid.is_valid(i) => NULL_SLOT,
                    _ => self.slot(base, T::wide(values[i])),
                };
                self.nulls[aggregate][slot] += 1;
            }
        }
    }

    /// The rows of `slots` as a batch of `schema` (key, then one count per aggregate).
    fn batch(&self, schema: &SchemaRef, slots: &[(Option<i64>, usize)]) -> Result<RecordBatch> {
        let key: ArrayRef = with_key_type!(
            schema.field(0).data_type(),
            T,
            Arc::new(
                slots
                    .iter()
                    .map(|(key, _)| key.map(T::narrow))
                    .collect::<PrimitiveArray<T>>()
            )
        );
        let mut columns = vec![key];
        for nulls in &self.nulls {
            columns.push(Arc::new(
                slots
                    .iter()
                    .map(|&(_, slot)| (self.rows[slot] - nulls[slot]) as i64)
                    .collect::<Int64Array>(),
            ));
        }
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    }

    /// The keys outside the window, and forgets them.
    fn take_overflow(&mut self, schema: &SchemaRef) -> Result<RecordBatch> {
        let mut slots: Vec<(Option<i64>, usize)> = self
            .overflow
            .iter()
            .map(|(&key, &slot)| (Some(key), slot))
            .collect();
        slots.sort_unstable_by_key(|&(_, slot)| slot);
        let batch = self.batch(schema, &slots)?;
        self.overflow.clear();
        self.rows.truncate(WINDOW + 1);
        for nulls in &mut self.nulls {
            nulls.truncate(WINDOW + 1);
        }
        Ok(batch)
    }

    /// Every key seen, and forgets them.
    fn take_all(&mut self, schema: &SchemaRef) -> Result<RecordBatch> {
        for lane in self.lanes.iter() {
            for (rows, counted) in self.rows.iter_mut().zip(&lane[..WINDOW]) {
                *rows += counted;
            }
        }
        *self.lanes = [[0; WINDOW + 1]; LANES];
        let base = self.base.unwrap_or(0);
        let mut slots: Vec<(Option<i64>, usize)> = (0..WINDOW)
            .filter(|&slot| self.rows[slot] > 0)
            .map(|slot| (Some(base.wrapping_add(slot as i64)), slot))
            .collect();
        if self.rows[NULL_SLOT] > 0 {
            slots.push((None, NULL_SLOT));
        }
        let mut overflow: Vec<(Option<i64>, usize)> = self
            .overflow
            .iter()
            .map(|(&key, &slot)| (Some(key), slot))
            .collect();
        overflow.sort_unstable_by_key(|&(_, slot)| slot);
        slots.extend(overflow);
        let batch = self.batch(schema, &slots)?;
        self.overflow.clear();
        self.rows.clear();
        self.nulls.clear();
        Ok(batch)
    }
}

struct DenseCountStream {
    input: SendableRecordBatchStream,
    schema: SchemaRef,
    key: Arc<dyn PhysicalExpr>,
    counted: Vec<Arc<dyn PhysicalExpr>>,
    counts: Counts,
    reservation: MemoryReservation,
    baseline: BaselineMetrics,
    done: bool,
}

impl DenseCountStream {
    /// Counts a batch; returns the overflow keys' counts when the map is full.
    fn update(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let rows = batch.num_rows();
        let keys = self.key.evaluate(batch)?.into_array(rows)?;
        let nulls = self
            .counted
            .iter()
            .map(|argument| {
                Ok(match argument.evaluate(batch)? {
                    // count(*) is count(1): nothing to count apart from the rows.
                    ColumnarValue::Scalar(value) if !value.is_null() => None,
                    ColumnarValue::Scalar(_) => Some(NullBuffer::new_null(rows)),
                    ColumnarValue::Array(values) => values
                        .logical_nulls()
                        .filter(|nulls| nulls.null_count() > 0),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        with_key_type!(
            keys.data_type(),
            T,
            self.counts.update::<T>(keys.as_primitive::<T>(), &nulls)
        );
        let size = self.counts.size();
        if size > self.reservation.size() {
            self.reservation.try_resize(size)?;
        }
        if self.counts.overflow.len() >= OVERFLOW_CAP {
            return self.counts.take_overflow(&self.schema).map(Some);
        }
        Ok(None)
    }
}

impl Stream for DenseCountStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let next = ready!(this.input.poll_next_unpin(cx));
            let elapsed = this.baseline.elapsed_compute().clone();
            let timer = elapsed.timer();
            let out = match next {
                Some(Ok(batch)) => match this.update(&batch) {
                    Ok(None) => continue,
                    Ok(Some(out)) => Some(Ok(out)),
                    Err(error) => {
                        this.done = true;
                        Some(Err(error))
                    }
                },
                Some(Err(error)) => {
                    this.done = true;
                    Some(Err(error))
                }
                None => {
                    this.done = true;
                    let all = this.counts.take_all(&this.schema);
                    this.reservation.free();
                    match all {
                        Ok(batch) if batch.num_rows() == 0 => None,
                        other => Some(other),
                    }
                }
            };
            timer.done();
            return this.baseline.record_poll(Poll::Ready(out));
        }
    }
}

impl RecordBatchStream for DenseCountStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{
        Int8Array, Int16Array, Int32Array, StringArray, UInt8Array, UInt64Array,
    };
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    use crate::query::tests::Rng;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int32, true),
            Field::new("k8", DataType::Int8, true),
            Field::new("k16", DataType::Int16, false),
            Field::new("k64", DataType::Int64, true),
            Field::new("ku8", DataType::UInt8, false),
            Field::new("ku64", DataType::UInt64, true),
            Field::new("v", DataType::Utf8, true),
            Field::new("w", DataType::Int32, true),
        ]))
    }

    /// `rows` rows: keys mostly in 0..600 with NULLs, negatives, keys far outside any window,
    /// and counted columns with NULLs.
    fn batch(rng: &mut Rng, rows: usize, offset: i64) -> RecordBatch {
        let mut k = Vec::new();
        let mut k8 = Vec::new();
        let mut k16 = Vec::new();
        let mut k64 = Vec::new();
        let mut ku8 = Vec::new();
        let mut ku64 = Vec::new();
        let mut v = Vec::new();
        let mut w = Vec::new();
        for _ in 0..rows {
            let r = rng.next();
            k.push(match r % 20 {
                0 => None,
                1 => Some(-((r % 700) as i32)),
                2 => Some(100_000 + (r % 5000) as i32),
                3 => Some(i32::MIN + (r % 3) as i32),
                _ => Some((r % 600) as i32),
            });
            k8.push((!r.is_multiple_of(7)).then_some((r % 256) as u8 as i8));
            k16.push((offset + (r % 3000) as i64) as i16);
            k64.push(match r % 11 {
                0 => None,
                1 => Some(i64::MAX - (r % 4) as i64),
                _ => Some(offset * 1_000_000 + (r % 2000) as i64),
            });
            ku8.push((r % 256) as u8);
            ku64.push(match r % 9 {
                0 => None,
                1 => Some(u64::MAX - r % 5),
                _ => Some(r % 1500),
            });
            v.push((!r.is_multiple_of(3)).then(|| format!("v{}", r % 10)));
            w.push((!r.is_multiple_of(5)).then_some((r % 100) as i32));
        }
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int32Array::from(k)),
                Arc::new(Int8Array::from(k8)),
                Arc::new(Int16Array::from(k16)),
                Arc::new(datafusion::arrow::array::Int64Array::from(k64)),
                Arc::new(UInt8Array::from(ku8)),
                Arc::new(UInt64Array::from(ku64)),
                Arc::new(StringArray::from(v)),
                Arc::new(Int32Array::from(w)),
            ],
        )
        .unwrap()
    }

    fn context(partitions: Vec<Vec<RecordBatch>>, dense: bool) -> SessionContext {
        let config = SessionConfig::new()
            .with_target_partitions(4)
            .with_batch_size(1000);
        let mut builder = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if dense {
            builder = builder.with_physical_optimizer_rule(Arc::new(DenseGroupCount));
        }
        let context = SessionContext::new_with_state(builder.build());
        let table = MemTable::try_new(schema(), partitions).unwrap();
        context.register_table("t", Arc::new(table)).unwrap();
        context
    }

    async fn plan(context: &SessionContext, sql: &str) -> String {
        let frame = context.sql(sql).await.unwrap();
        let plan = frame.create_physical_plan().await.unwrap();
        displayable(plan.as_ref()).indent(true).to_string()
    }

    async fn answer(context: &SessionContext, sql: &str) -> String {
        let batches = context.sql(sql).await.unwrap().collect().await.unwrap();
        pretty_format_batches(&batches).unwrap().to_string()
    }

    /// Runs `sql` with and without the rule; both answers must agree and the rule must fire.
    async fn same_answer(partitions: &[Vec<RecordBatch>], sql: &str) -> String {
        let dense = context(partitions.to_vec(), true);
        let plain = context(partitions.to_vec(), false);
        let shown = plan(&dense, sql).await;
        assert!(shown.contains("DenseCountExec"), "{sql}: {shown}");
        assert!(!plan(&plain, sql).await.contains("DenseCountExec"));
        let expected = answer(&plain, sql).await;
        assert_eq!(answer(&dense, sql).await, expected, "{sql}");
        expected
    }

    fn generated(partitions: usize, batches: usize, rows: usize) -> Vec<Vec<RecordBatch>> {
        let mut rng = Rng(7);
        (0..partitions)
            .map(|p| {
                (0..batches)
                    .map(|b| batch(&mut rng, rows, (p * batches + b) as i64))
                    .collect()
            })
            .collect()
    }

    #[tokio::test]
    async fn counts_match_datafusion_for_every_key_type_with_nulls_and_outliers() {
        let data = generated(5, 4, 900);
        for key in ["k", "k8", "k16", "k64", "ku8", "ku64"] {
            let sql = format!(
                "SELECT {key}, count(*) AS n, count(v) AS nv, count(1) AS one, count(w + 1) AS nw \
                 FROM t GROUP BY {key} ORDER BY {key} NULLS FIRST"
            );
            let table = same_answer(&data, &sql).await;
            assert!(table.lines().count() > 20, "{table}");
        }
        // A filter below the aggregate, a key that is an expression, and only count(col).
        same_answer(
            &data,
            "SELECT k, count(v) FROM t WHERE w > 50 GROUP BY k ORDER BY k NULLS LAST",
        )
        .await;
        same_answer(
            &data,
            "SELECT k % 7 AS m, count(*) FROM t GROUP BY k % 7 ORDER BY m NULLS FIRST",
        )
        .await;
    }

    #[tokio::test]
    async fn a_window_learned_from_negative_keys_and_an_overflow_past_the_cap() {
        // First batch all negative: the window starts at its smallest key.
        let negative = RecordBatch::try_new(
            schema(),
            batch(&mut Rng(1), 500, 0)
                .columns()
                .iter()
                .enumerate()
                .map(|(i, column)| {
                    if i == 0 {
                        Arc::new(Int32Array::from_iter_values((0..500).map(|x| -1000 + x)))
                            as ArrayRef
                    } else {
                        Arc::clone(column)
                    }
                })
                .collect(),
        )
        .unwrap();
        let mut first = vec![negative];
        first.extend(generated(1, 3, 700).remove(0));
        let data = vec![first, generated(1, 2, 300).remove(0)];
        same_answer(
            &data,
            "SELECT k, count(*), count(v) FROM t GROUP BY k ORDER BY k NULLS FIRST",
        )
        .await;

        // More distinct keys outside the window than the map holds: sent on in parts, the final
        // aggregate adds them up.
        let keys = OVERFLOW_CAP as i64 + 20_000;
        let wide: Vec<RecordBatch> = (0..4)
            .map(|part| {
                let mut rng = Rng(part as u64);
                let template = batch(&mut rng, (keys / 2) as usize, 0);
                let k64 = (0..keys / 2).map(|i| Some(5_000_000 + (i * 2 + part % 2) * 7));
                let mut columns = template.columns().to_vec();
                columns[3] = Arc::new(datafusion::arrow::array::Int64Array::from_iter(k64));
                RecordBatch::try_new(schema(), columns).unwrap()
            })
            .collect();
        // The first partition sees its first part's keys again after they were sent on.
        let data = vec![
            vec![wide[0].clone(), wide[1].clone(), wide[0].clone()],
            wide[2..].to_vec(),
        ];
        let summary = same_answer(
            &data,
            "SELECT count(*) AS groups, sum(n) AS rows, max(n) AS most FROM \
             (SELECT k64, count(*) AS n FROM t GROUP BY k64)",
        )
        .await;
        assert!(summary.contains(&format!("| {keys} ")), "{summary}");
    }

    #[tokio::test]
    async fn empty_input_gives_no_groups() {
        let rows = |partitions: Vec<Vec<RecordBatch>>, sql: &'static str| async move {
            same_answer(&partitions, sql).await;
            let batches = context(partitions, true)
                .sql(sql)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            batches.iter().map(RecordBatch::num_rows).sum::<usize>()
        };
        let empty = vec![vec![], vec![batch(&mut Rng(3), 0, 0)]];
        assert_eq!(rows(empty, "SELECT k, count(*) FROM t GROUP BY k").await, 0);
        let filtered = "SELECT k, count(*) FROM t WHERE w > 1000 GROUP BY k";
        assert_eq!(rows(generated(2, 2, 100), filtered).await, 0);
    }

    #[tokio::test]
    async fn a_single_distinct_count_is_rewritten_and_its_outer_count_is_dense() {
        // DataFusion turns it into GROUP BY k, w (two columns: left alone) under a
        // count(alias) GROUP BY k (a plain count: dense); the answer stays DataFusion's.
        same_answer(
            &generated(3, 2, 500),
            "SELECT k, count(DISTINCT w) AS n FROM t GROUP BY k ORDER BY k NULLS FIRST",
        )
        .await;
    }

    #[tokio::test]
    async fn the_rule_leaves_other_aggregates_alone() {
        let dense = context(generated(2, 2, 100), true);
        for sql in [
            "SELECT k, k8, count(*) FROM t GROUP BY k, k8",
            "SELECT k, sum(w) FROM t GROUP BY k",
            "SELECT k, count(*), sum(w) FROM t GROUP BY k",
            "SELECT k, count(DISTINCT w), count(DISTINCT v) FROM t GROUP BY k",
            "SELECT k, count(*) FILTER (WHERE w > 3) FROM t GROUP BY k",
            "SELECT v, count(*) FROM t GROUP BY v",
            "SELECT count(*) FROM t",
            "SELECT k, count(*) FROM t GROUP BY ROLLUP (k)",
        ] {
            let shown = plan(&dense, sql).await;
            assert!(!shown.contains("DenseCountExec"), "{sql}: {shown}");
            // And the answers are still DataFusion's.
            answer(&dense, sql).await;
        }
    }
}
