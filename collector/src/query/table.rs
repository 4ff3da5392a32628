//! The `exchanges` table: the Parquet files in the store plus the buffered exchanges, with the
//! hive partition columns `service`, `date` and `hour`.
//!
//! Every scan takes a buffer [`Snapshot`](crate::buffer::Snapshot) first and lists the store
//! second, so each exchange is read exactly once (see [`crate::buffer`]). Filters prune the
//! partitions before anything is listed or opened: an equality or `IN` on `service` lists only
//! those services, a range on `start_time` (or on `date` / `hour`) lists only the hour folders
//! that can hold matching rows, and any other filter that uses only partition columns is
//! evaluated against each candidate partition. All filters are also applied to the rows
//! (DataFusion keeps them above the scan), so pruning never changes a result.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::listing::helpers::expr_applicable_for_cols;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use tapedeck_proto::arrow::columns::START_TIME;

use crate::buffer::Buffer;
use crate::cache::ListingCache;
use crate::layout::{
    FileName, PARTITION_COLUMNS, PartitionKey, TABLE_DIR, date_hour, sanitize_service,
};
use crate::manifest::StateCache;

const HOUR_NANOS: i64 = 3_600 * 1_000_000_000;
const DAY_NANOS: i64 = 24 * HOUR_NANOS;
/// A time window of at most this many days is enumerated rather than listed.
const MAX_ENUMERATED_DAYS: i64 = 31;

/// The partition columns as Arrow fields (`Utf8`, never null), in path order.
fn partition_fields() -> Vec<FieldRef> {
    PARTITION_COLUMNS
        .iter()
        .map(|name| Arc::new(Field::new(*name, DataType::Utf8, false)))
        .collect()
}

static TABLE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let file = tapedeck_proto::arrow::schema();
    let mut fields: Vec<FieldRef> = file.fields().iter().cloned().collect();
    fields.extend(partition_fields());
    Arc::new(Schema::new_with_metadata(fields, file.metadata().clone()))
});

/// The schema of the `exchanges` table as SQL sees it: the `exchanges` Arrow schema followed by
/// the partition columns `service`, `date` (`YYYY-MM-DD`) and `hour` (`HH`), all `Utf8`, UTC.
pub fn table_schema() -> SchemaRef {
    TABLE_SCHEMA.clone()
}

/// The `exchanges` table provider.
#[derive(Debug)]
pub(crate) struct ExchangesTable {
    store: Arc<dyn ObjectStore>,
    store_url: ObjectStoreUrl,
    buffer: Arc<Buffer>,
    states: StateCache,
    listings: Arc<ListingCache>,
}

impl ExchangesTable {
    /// A table over `store` (registered in the runtime under `store_url`) and `buffer`, listing
    /// through `listings` ([`crate::cache`]).
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        store_url: ObjectStoreUrl,
        buffer: Arc<Buffer>,
        listings: Arc<ListingCache>,
    ) -> Self {
        Self {
            store,
            store_url,
            buffer,
            states: StateCache::default(),
            listings,
        }
    }

    /// The names of the `<key>=<value>` folders right under `dir` (`value`s only).
    async fn list_dirs(&self, dir: &Path, key: &str) -> Result<Vec<String>> {
        let listing = self.store.list_with_delimiter(Some(dir)).await?;
        let prefix = format!("{key}=");
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|path| path.filename()?.strip_prefix(&prefix).map(str::to_string))
            .collect())
    }

    /// The folders to list for a scan: whole `date=` folders when every hour of the day can
    /// match, `hour=` folders otherwise.
    async fn prefixes(&self, prune: &Prune) -> Result<Vec<Path>> {
        if prune.services.is_none() && !prune.constrains_dates() {
            // Nothing to prune: one recursive listing of the whole table.
            return Ok(vec![Path::from(TABLE_DIR)]);
        }
        let services: Vec<String> = match &prune.services {
            Some(services) => services
                .iter()
                .filter(|s| sanitize_service(s) == **s)
                .cloned()
                .collect(),
            None => self.list_dirs(&Path::from(TABLE_DIR), "service").await?,
        };
        let mut prefixes = Vec::new();
        for service in services {
            let service_dir = Path::from(format!("{TABLE_DIR}/service={service}"));
            if !prune.constrains_dates() {
                prefixes.push(service_dir);
                continue;
            }
            let dates = match prune.enumerable_dates() {
                Some(dates) => dates,
                None => {
                    let mut dates = self.list_dirs(&service_dir, "date").await?;
                    dates.retain(|date| prune.day_may_match(date));
                    dates
                }
            };
            for date in dates {
                let hours: Vec<PartitionKey> = (0..24)
                    .map(|hour| PartitionKey {
                        service: service.clone(),
                        date: date.clone(),
                        hour: format!("{hour:02}"),
                    })
                    .collect();
                let keep = prune.keeps_all(&hours);
                if keep.iter().all(|keep| *keep) {
                    prefixes.push(Path::from(format!("{service_dir}/date={date}")));
                } else {
                    prefixes.extend(
                        hours
                            .iter()
                            .zip(keep)
                            .filter(|(_, keep)| *keep)
                            .map(|(key, _)| key.dir()),
                    );
                }
            }
        }
        Ok(prefixes)
    }

    /// Lists the data files the scan may need: the visible ones, by the partition manifests
    /// (read once per version, [`StateCache`]).
    async fn list_files(&self, prune: &Prune) -> Result<Vec<(PartitionKey, FileName, ObjectMeta)>> {
        let prefixes = self.prefixes(prune).await?;
        let visible =
            crate::manifest::resolve_visible(&self.store, &self.states, &self.listings, &prefixes)
                .await
                .map_err(|error| DataFusionError::External(Box::new(error)))?;
        let mut files: Vec<_> = visible
            .into_iter()
            .flat_map(|(key, files)| {
                files
                    .into_iter()
                    .map(move |(name, meta)| (key.clone(), name, meta))
            })
            .collect();
        // Folders are chosen by partition, but a whole-table or whole-service listing also
        // returns partitions the filters rule out.
        let keys: Vec<PartitionKey> = files
            .iter()
            .map(|(key, _, _)| key)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let kept: BTreeMap<PartitionKey, bool> =
            keys.iter().cloned().zip(prune.keeps_all(&keys)).collect();
        files.retain(|(key, _, _)| kept.get(key).copied().unwrap_or(true));
        // Newest hour first: a scan reads its files in this order, so `ORDER BY start_time DESC
        // LIMIT n` finds its rows in the first files and the top-k's dynamic filter rules out the
        // row groups of the older ones by their statistics before they are read.
        files.sort_by(|a, b| {
            (&b.0.date, &b.0.hour)
                .cmp(&(&a.0.date, &a.0.hour))
                .then_with(|| a.2.location.cmp(&b.2.location))
        });
        Ok(files)
    }
}

#[async_trait]
impl TableProvider for ExchangesTable {
    fn schema(&self) -> SchemaRef {
        table_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters are used to prune partitions and row groups; DataFusion still applies them.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The snapshot first, the listing second: see the `buffer` module docs.
        let snapshot = self.buffer.snapshot();
        let prune = Prune::new(state, filters)?;
        let files = self.list_files(&prune).await?;
        let listed: HashSet<Path> = files
            .iter()
            .map(|(_, _, meta)| meta.location.clone())
            .collect();

        let mut buffered: Vec<(PartitionKey, RecordBatch)> = snapshot.open;
        for sealed in &snapshot.sealed {
            if !listed.contains(&sealed.partition.file(&sealed.file)) {
                buffered.extend(
                    sealed
                        .batches
                        .iter()
                        .map(|batch| (sealed.partition.clone(), batch.clone())),
                );
            }
        }
        let keys: BTreeSet<&PartitionKey> = buffered.iter().map(|(key, _)| key).collect();
        let keys: Vec<PartitionKey> = keys.into_iter().cloned().collect();
        let kept: BTreeMap<PartitionKey, bool> =
            keys.iter().cloned().zip(prune.keeps_all(&keys)).collect();
        let batches = buffered
            .into_iter()
            .filter(|(key, _)| kept.get(key).copied().unwrap_or(true))
            .map(|(key, batch)| with_partition_columns(&key, &batch))
            .collect::<Result<Vec<_>>>()?;

        let partitions = state.config().target_partitions().max(1);
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !files.is_empty() {
            let mut groups: Vec<Vec<PartitionedFile>> =
                vec![Vec::new(); partitions.min(files.len())];
            let count = groups.len();
            for (i, (key, _, meta)) in files.into_iter().enumerate() {
                let values = vec![
                    ScalarValue::Utf8(Some(key.service)),
                    ScalarValue::Utf8(Some(key.date)),
                    ScalarValue::Utf8(Some(key.hour)),
                ];
                groups[i % count]
                    .push(PartitionedFile::new_from_meta(meta).with_partition_values(values));
            }
            let format =
                ParquetFormat::default().with_options(state.table_options().parquet.clone());
            let source = format.file_source(
                TableSchema::builder(tapedeck_proto::arrow::schema())
                    .with_table_partition_cols(partition_fields())
                    .build(),
            );
            let config = FileScanConfigBuilder::new(self.store_url.clone(), source)
                .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
            inputs.push(format.create_physical_plan(state, config).await?);
        }
        if !batches.is_empty() {
            let mut groups: Vec<Vec<RecordBatch>> = vec![Vec::new(); partitions.min(batches.len())];
            let count = groups.len();
            for (i, batch) in batches.into_iter().enumerate() {
                groups[i % count].push(batch);
            }
            inputs.push(MemorySourceConfig::try_new_exec(
                &groups,
                table_schema(),
                projection.cloned(),
            )?);
        }
        if inputs.is_empty() {
            let schema = match projection {
                Some(projection) => Arc::new(table_schema().project(projection)?),
                None => table_schema(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        UnionExec::try_new(inputs)
    }
}

/// Adds the partition columns to a buffered batch.
fn with_partition_columns(key: &PartitionKey, batch: &RecordBatch) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for value in [&key.service, &key.date, &key.hour] {
        columns.push(Arc::new(StringArray::from_iter_values(
            std::iter::repeat_n(value, rows),
        )));
    }
    Ok(RecordBatch::try_new(table_schema(), columns)?)
}

/// What a scan's filters say about the partitions it needs.
#[derive(Debug)]
pub(crate) struct Prune {
    /// The services that can match, when the filters name them.
    services: Option<BTreeSet<String>>,
    /// Inclusive bounds on `start_time`, ns since the epoch.
    start: Option<i64>,
    end: Option<i64>,
    /// The filters that use only partition columns, over [`partition_fields`].
    partition_filter: Option<Arc<dyn PhysicalExpr>>,
    /// Whether those filters use `date` or `hour`.
    filters_dates: bool,
}

impl Prune {
    pub(crate) fn new(state: &dyn Session, filters: &[Expr]) -> Result<Self> {
        let filters: Vec<Expr> = filters.iter().cloned().map(unnormalize_col).collect();
        let conjuncts: Vec<&Expr> = filters.iter().flat_map(split_conjunction).collect();
        let mut services: Option<BTreeSet<String>> = None;
        let (mut start, mut end) = (None, None);
        for expr in &conjuncts {
            if let Some(found) = service_set(expr) {
                services = Some(match services {
                    Some(known) => known.intersection(&found).cloned().collect(),
                    None => found,
                });
            }
            let (low, high) = time_bounds(expr);
            start = max_opt(start, low);
            end = min_opt(end, high);
        }
        let partition_only: Vec<Expr> = conjuncts
            .into_iter()
            .filter(|expr| expr_applicable_for_cols(&PARTITION_COLUMNS, expr))
            .cloned()
            .collect();
        let filters_dates = partition_only.iter().any(|expr| {
            expr.column_refs()
                .iter()
                .any(|column| column.name != PARTITION_COLUMNS[0])
        });
        let partition_filter = match conjunction(partition_only) {
            Some(expr) => {
                let schema = DFSchema::try_from(Schema::new(partition_fields()))?;
                // A filter that cannot be planned here (rare) just does not prune.
                state.create_physical_expr(expr, &schema).ok()
            }
            None => None,
        };
        Ok(Self {
            services,
            start: start.map(|s| s.max(0)),
            end,
            partition_filter,
            filters_dates,
        })
    }

    /// Whether anything but the service limits which dates and hours can match.
    fn constrains_dates(&self) -> bool {
        self.start.is_some() || self.end.is_some() || self.filters_dates
    }

    /// No row can match.
    fn empty(&self) -> bool {
        matches!((self.start, self.end), (Some(start), Some(end)) if start > end)
            || matches!(self.end, Some(end) if end < 0)
    }

    /// The dates of a bounded time window, when it is short enough to name them all.
    fn enumerable_dates(&self) -> Option<Vec<String>> {
        if self.empty() {
            return Some(Vec::new());
        }
        let (start, end) = (self.start?, self.end?);
        let (first, last) = (start.div_euclid(DAY_NANOS), end.div_euclid(DAY_NANOS));
        if last - first >= MAX_ENUMERATED_DAYS {
            return None;
        }
        Some(
            (first..=last)
                .map(|day| date_hour(u64::try_from(day * DAY_NANOS).unwrap_or(0)).0)
                .collect(),
        )
    }

    /// Whether a `date=` folder can hold matching rows (by the time window only).
    fn day_may_match(&self, date: &str) -> bool {
        let key = PartitionKey {
            service: String::new(),
            date: date.to_string(),
            hour: "00".into(),
        };
        match key.start_unix_nanos() {
            Some(day) => self.overlaps(day, day + DAY_NANOS - 1),
            None => false,
        }
    }

    fn overlaps(&self, from: i64, to: i64) -> bool {
        !self.empty()
            && self.start.is_none_or(|start| to >= start)
            && self.end.is_none_or(|end| from <= end)
    }

    /// Whether each partition can hold matching rows.
    pub(crate) fn keeps_all(&self, keys: &[PartitionKey]) -> Vec<bool> {
        let mut keep: Vec<bool> = keys
            .iter()
            .map(|key| {
                let service = self
                    .services
                    .as_ref()
                    .is_none_or(|services| services.contains(&key.service));
                let time = match key.start_unix_nanos() {
                    Some(hour) => self.overlaps(hour, hour + HOUR_NANOS - 1),
                    None => false,
                };
                service && time
            })
            .collect();
        if let Some(filter) = &self.partition_filter
            && let Some(matches) = evaluate(filter, keys)
        {
            for (keep, matches) in keep.iter_mut().zip(matches) {
                *keep &= matches;
            }
        }
        keep
    }
}

/// Evaluates a partition filter on partitions; `None` if it cannot be evaluated (then it does
/// not prune).
fn evaluate(filter: &Arc<dyn PhysicalExpr>, keys: &[PartitionKey]) -> Option<Vec<bool>> {
    if keys.is_empty() {
        return Some(Vec::new());
    }
    let column = |part: fn(&PartitionKey) -> &String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(keys.iter().map(part)))
    };
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(partition_fields())),
        vec![
            column(|k| &k.service),
            column(|k| &k.date),
            column(|k| &k.hour),
        ],
    )
    .ok()?;
    let result = filter.evaluate(&batch).ok()?.into_array(keys.len()).ok()?;
    let result = result.as_boolean_opt()?;
    // NULL means the row would be filtered out.
    Some(
        (0..keys.len())
            .map(|i| result.is_valid(i) && result.value(i))
            .collect(),
    )
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn is_column(expr: &Expr, name: &str) -> bool {
    matches!(expr, Expr::Column(column) if column.name == name)
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        _ => None,
    }
}

fn text(value: &ScalarValue) -> Option<String> {
    match value {
        ScalarValue::Utf8(Some(text))
        | ScalarValue::LargeUtf8(Some(text))
        | ScalarValue::Utf8View(Some(text)) => Some(text.clone()),
        ScalarValue::Dictionary(_, inner) => text(inner),
        _ => None,
    }
}

/// The services an expression allows, if it names them (`service = 'a'`, `service IN (…)`,
/// and `OR`s / `AND`s of those).
pub(crate) fn service_set(expr: &Expr) -> Option<BTreeSet<String>> {
    const SERVICE: &str = PARTITION_COLUMNS[0];
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            let value = if is_column(left, SERVICE) {
                literal(right)
            } else if is_column(right, SERVICE) {
                literal(left)
            } else {
                None
            };
            value
                .and_then(text)
                .map(|service| BTreeSet::from([service]))
        }
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) if is_column(expr, SERVICE) => list
            .iter()
            .map(|item| literal(item).and_then(text))
            .collect(),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let (left, right) = (service_set(left)?, service_set(right)?);
            Some(left.union(&right).cloned().collect())
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => match (service_set(left), service_set(right)) {
            (Some(left), Some(right)) => Some(left.intersection(&right).cloned().collect()),
            (left, right) => left.or(right),
        },
        _ => None,
    }
}

/// A timestamp literal as ns since the epoch (saturating).
fn nanos(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(v.saturating_mul(1_000)),
        ScalarValue::TimestampMillisecond(Some(v), _) => Some(v.saturating_mul(1_000_000)),
        ScalarValue::TimestampSecond(Some(v), _) => Some(v.saturating_mul(1_000_000_000)),
        _ => None,
    }
}

/// Inclusive bounds an expression puts on `start_time` (`>`, `>=`, `<`, `<=`, `=`,
/// `BETWEEN`, and `AND` / `OR` of those).
pub(crate) fn time_bounds(expr: &Expr) -> (Option<i64>, Option<i64>) {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => {
                let (l, r) = (time_bounds(left), time_bounds(right));
                (max_opt(l.0, r.0), min_opt(l.1, r.1))
            }
            Operator::Or => {
                let (l, r) = (time_bounds(left), time_bounds(right));
                let start = l.0.zip(r.0).map(|(a, b)| a.min(b));
                let end = l.1.zip(r.1).map(|(a, b)| a.max(b));
                (start, end)
            }
            _ => {
                let (op, value) = if is_column(left, START_TIME) {
                    (*op, literal(right).and_then(nanos))
                } else if is_column(right, START_TIME) {
                    match op.swap() {
                        Some(op) => (op, literal(left).and_then(nanos)),
                        None => return (None, None),
                    }
                } else {
                    return (None, None);
                };
                let Some(v) = value else { return (None, None) };
                match op {
                    Operator::Eq => (Some(v), Some(v)),
                    Operator::Gt => (Some(v.saturating_add(1)), None),
                    Operator::GtEq => (Some(v), None),
                    Operator::Lt => (None, Some(v.saturating_sub(1))),
                    Operator::LtEq => (None, Some(v)),
                    _ => (None, None),
                }
            }
        },
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_column(expr, START_TIME) => {
            (literal(low).and_then(nanos), literal(high).and_then(nanos))
        }
        _ => (None, None),
    }
}
