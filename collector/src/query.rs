//! Read-only SQL over every stored exchange: the table `exchanges` is the Parquet files in the
//! store plus the exchanges still in the buffer (acknowledged, not yet flushed).
//!
//! [`QueryEngine`] runs one statement at a time under [`QueryArgs`] limits: a time limit that
//! covers waiting, planning and streaming the result; a memory limit for sorts, joins and
//! aggregates (nothing spills to disk); a cap on returned rows; and a cap on concurrent queries.
//! Only queries are allowed (`SELECT`, `WITH`, `VALUES`, `EXPLAIN`, `DESCRIBE`, `SHOW TABLES`,
//! `SHOW COLUMNS`); DDL, DML, `COPY`, `SET` and every other statement fail with
//! `read-only: … is not allowed`, and no file outside the store can be read.
//!
//! Functions beyond DataFusion's: `header(headers, name)`, `body_text(body)` and the JSON
//! functions of `datafusion-functions-json` (`json_get_str(body_text(response_body), 'id')`,
//! `json_get_int`, `json_contains`, `->`, `->>` …).
//!
//! Used by the collector's Flight SQL endpoint ([`crate::flight`]) and by `tapedeck sql`
//! ([`open_offline`] when no collector runs, [`format_batches`] to print results).

mod dense;
mod format;
mod functions;
mod percentile;
mod table;
#[cfg(test)]
mod tests;

use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::object_store::{
    DefaultObjectStoreRegistry, ObjectStoreRegistry, ObjectStoreUrl,
};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{SetExpr, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::ParserError;
use futures::{Stream, StreamExt};
use object_store::ObjectStore;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

use crate::buffer::Buffer;

pub use format::{OutputFormat, format_batches};
pub use functions::{BODY_TEXT, HEADER, body_text_udf, header_udf};
pub use table::table_schema;

/// The name of the table.
pub const TABLE_NAME: &str = "exchanges";
/// The URL the store is registered under inside the query runtime (no other store is).
const STORE_URL: &str = "tapedeck://store";
const GIB: u64 = 1024 * 1024 * 1024;

/// Query limits (Flight SQL and `tapedeck sql`).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct QueryArgs {
    /// Seconds a query may take, waiting for its turn, planning and sending its results
    /// included; a slower query is cancelled with an error.
    #[arg(
        long = "query-timeout",
        env = "TAPEDECK_QUERY_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub timeout: u64,

    /// Memory one query may use for sorts, joins and aggregates, in bytes; a query that needs
    /// more fails (nothing spills to disk).
    #[arg(
        long = "query-memory",
        env = "TAPEDECK_QUERY_MEMORY",
        value_name = "BYTES",
        default_value_t = GIB,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub memory: u64,

    /// Most rows a query may return; a query that returns more fails (add a LIMIT). 0 means no
    /// limit.
    #[arg(
        long = "query-max-rows",
        env = "TAPEDECK_QUERY_MAX_ROWS",
        value_name = "ROWS",
        default_value_t = 1_000_000
    )]
    pub max_rows: u64,

    /// Queries that may run at once; more wait for a turn (within their time limit).
    #[arg(
        long = "query-concurrency",
        env = "TAPEDECK_QUERY_CONCURRENCY",
        value_name = "QUERIES",
        default_value_t = 4,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub concurrency: u64,
}

impl Default for QueryArgs {
    /// The defaults of the flags.
    fn default() -> Self {
        Self {
            timeout: 30,
            memory: GIB,
            max_rows: 1_000_000,
            concurrency: 4,
        }
    }
}

impl QueryArgs {
    /// The time limit.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

/// Why a query failed. Messages are meant for the person who wrote the query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The statement would change something or read outside the `exchanges` table.
    #[error("read-only: {what} is not allowed")]
    ReadOnly {
        /// The kind of statement, for example `CREATE TABLE` or `COPY`.
        what: String,
    },
    /// The text holds no statement, or more than one.
    #[error("expected one SQL statement, got {count}")]
    StatementCount {
        /// Statements found.
        count: usize,
    },
    /// The statement does not parse or does not plan (unknown column, type mismatch …).
    #[error("invalid SQL: {message}")]
    InvalidSql {
        /// DataFusion's explanation (with line and column for syntax errors).
        message: String,
    },
    /// The query ran past `--query-timeout`.
    #[error("query exceeded the {seconds} s limit (--query-timeout)")]
    Timeout {
        /// The limit.
        seconds: u64,
    },
    /// The query needed more than `--query-memory`.
    #[error("query exceeded the memory limit of {limit} bytes (--query-memory): {detail}")]
    MemoryLimit {
        /// The limit.
        limit: u64,
        /// What needed the memory.
        detail: String,
    },
    /// The query returned more than `--query-max-rows` rows.
    #[error(
        "query returned more than {limit} rows (--query-max-rows); add a LIMIT or a narrower WHERE"
    )]
    TooManyRows {
        /// The limit.
        limit: u64,
    },
    /// The query failed while running, by its own fault (a value that does not cast, a
    /// division by zero, a malformed timestamp literal …).
    #[error("query failed: {message}")]
    Failed {
        /// What failed.
        message: String,
    },
    /// The query failed for a reason that is not its own (the store cannot be read, a damaged
    /// file, a bug).
    #[error("query failed inside the collector: {message}")]
    Internal {
        /// What failed.
        message: String,
    },
}

impl QueryError {
    /// Whether the error is the query's fault (as opposed to the collector's or the store's).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, QueryError::Internal { .. })
    }

    fn from_datafusion(error: DataFusionError, args: &QueryArgs) -> Self {
        let root = error.find_root();
        match root {
            DataFusionError::SQL(parser, _) => QueryError::InvalidSql {
                message: parser_message(parser),
            },
            DataFusionError::Plan(message) | DataFusionError::NotImplemented(message) => {
                QueryError::InvalidSql {
                    message: message.clone(),
                }
            }
            DataFusionError::SchemaError(schema, _) => QueryError::InvalidSql {
                message: schema.to_string(),
            },
            DataFusionError::ResourcesExhausted(detail) => QueryError::MemoryLimit {
                limit: args.memory,
                detail: detail.clone(),
            },
            DataFusionError::ObjectStore(_)
            | DataFusionError::IoError(_)
            | DataFusionError::ParquetError(_)
            | DataFusionError::Internal(_)
            | DataFusionError::External(_)
            | DataFusionError::Configuration(_) => QueryError::Internal {
                message: error.strip_backtrace(),
            },
            _ => QueryError::Failed {
                message: root.strip_backtrace(),
            },
        }
    }
}

fn parser_message(error: &ParserError) -> String {
    match error {
        ParserError::ParserError(message) | ParserError::TokenizerError(message) => message.clone(),
        other => other.to_string(),
    }
}

/// Runs read-only SQL over the store and the buffer. Cheap to share behind an `Arc`.
pub struct QueryEngine {
    /// Functions, configuration and the `exchanges` table; each query gets a copy with its own
    /// runtime (memory pool).
    base: SessionState,
    runtime: Arc<RuntimeEnv>,
    args: QueryArgs,
    turns: Arc<Semaphore>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryEngine")
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

impl QueryEngine {
    /// An engine over the Parquet files in `store` (see [`crate::layout`]) and the exchanges in
    /// `buffer`, with a listing cache of its own.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        buffer: Arc<Buffer>,
        args: &QueryArgs,
    ) -> crate::Result<Self> {
        Self::with_listing_cache(store, buffer, args, Arc::default())
    }

    /// [`QueryEngine::new`] listing through `listings`: the cache a collector's own flushes
    /// and maintenance tell of their changes ([`crate::store::StoreHandle::changes`]).
    pub fn with_listing_cache(
        store: Arc<dyn ObjectStore>,
        buffer: Arc<Buffer>,
        args: &QueryArgs,
        listings: Arc<crate::cache::ListingCache>,
    ) -> crate::Result<Self> {
        let store_url = ObjectStoreUrl::parse(STORE_URL)?;
        // The default registry also serves `file://`; take it out so that no query can name a
        // local file even if a way to do so slipped through the statement checks.
        let registry = DefaultObjectStoreRegistry::new();
        let _ = registry.deregister_store(ObjectStoreUrl::local_filesystem().as_ref());
        registry.register_store(store_url.as_ref(), store.clone());
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(registry))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()?;
        let mut config = SessionConfig::new().with_information_schema(true);
        let options = config.options_mut();
        // Late materialization: read bodies only for rows that pass the filters.
        options.execution.parquet.pushdown_filters = true;
        options.execution.parquet.reorder_filters = true;
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime.clone())
            .with_default_features()
            .with_table_factories(Default::default())
            // `GROUP BY <small integer>` with counts: flat arrays instead of a hash table.
            .with_physical_optimizer_rule(Arc::new(dense::DenseGroupCount))
            .build();
        datafusion_functions_json::register_all(&mut state)?;
        use datafusion::execution::FunctionRegistry as _;
        state.register_udf(Arc::new(header_udf()))?;
        state.register_udf(Arc::new(body_text_udf()))?;
        // `approx_percentile_cont` with a grouped accumulator, under DataFusion's name.
        state.register_udaf(Arc::new(
            datafusion::logical_expr::AggregateUDF::new_from_impl(
                percentile::GroupedApproxPercentile::default(),
            ),
        ))?;
        for name in functions::SIZED_BY_ARGUMENT {
            if let Some(inner) = state.scalar_functions().get(name).cloned() {
                state.register_udf(Arc::new(functions::bounded(inner, args.memory)))?;
            }
        }
        let context = SessionContext::new_with_state(state);
        context.register_table(
            TABLE_NAME,
            Arc::new(table::ExchangesTable::new(
                store, store_url, buffer, listings,
            )),
        )?;
        let turns = Arc::new(Semaphore::new(
            usize::try_from(args.concurrency.max(1)).unwrap_or(usize::MAX),
        ));
        Ok(Self {
            base: context.state(),
            runtime,
            args: args.clone(),
            turns,
            metrics: None,
        })
    }

    /// Counts every query and its duration (`tapedeck_collector_queries_total`,
    /// `tapedeck_collector_query_seconds`) in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The limits this engine enforces.
    pub fn args(&self) -> &QueryArgs {
        &self.args
    }

    /// Runs a query and collects its result.
    pub async fn sql(&self, query: &str) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        let deadline = Instant::now() + self.args.timeout();
        let mut stream = self.sql_stream_until(query, &[], deadline).await?;
        let schema = stream.schema();
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            batches.push(batch?);
        }
        Ok((schema, batches))
    }

    /// Runs a query and streams its result; the time limit covers the whole stream.
    pub async fn sql_stream(&self, query: &str) -> Result<QueryStream, QueryError> {
        self.sql_stream_until(query, &[], Instant::now() + self.args.timeout())
            .await
    }

    /// [`QueryEngine::sql_stream`] with values for the statement's placeholders (`$1`, `$2`, …
    /// in order); what prepared statements with bound parameters run.
    pub async fn sql_stream_with(
        &self,
        query: &str,
        params: &[ScalarValue],
    ) -> Result<QueryStream, QueryError> {
        self.sql_stream_until(query, params, Instant::now() + self.args.timeout())
            .await
    }

    /// The placeholders of a statement (`$1`, `$2`, …, in order) and the types DataFusion
    /// infers for them (`None` when it cannot).
    pub async fn parameter_types(
        &self,
        query: &str,
    ) -> Result<Vec<(String, Option<DataType>)>, QueryError> {
        let deadline = Instant::now() + self.args.timeout();
        let state = self.session()?;
        let plan = self
            .with_deadline(deadline, self.plan(&state, query))
            .await??;
        let mut types: Vec<(String, Option<DataType>)> = plan
            .get_parameter_types()
            .map_err(|e| self.error(e))?
            .into_iter()
            .collect();
        types.sort_by_key(|(name, _)| {
            name.trim_start_matches('$')
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        Ok(types)
    }

    /// The schema a query's result will have, without running it.
    ///
    /// A query that fails here (invalid SQL, a refused statement) is counted as a failed query;
    /// one that plans is counted when it runs.
    pub async fn schema(&self, query: &str) -> Result<SchemaRef, QueryError> {
        let began = Instant::now();
        let deadline = began + self.args.timeout();
        let planned = async {
            let state = self.session()?;
            self.with_deadline(deadline, self.plan(&state, query))
                .await?
        }
        .await;
        match planned {
            Ok(plan) => Ok(plan.schema().inner().clone()),
            Err(error) => {
                if let Some(metrics) = &self.metrics {
                    metrics.query_finished(began.elapsed(), false);
                }
                Err(error)
            }
        }
    }

    async fn sql_stream_until(
        &self,
        query: &str,
        params: &[ScalarValue],
        deadline: Instant,
    ) -> Result<QueryStream, QueryError> {
        let start = async {
            let turn =
                self.turns
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| QueryError::Internal {
                        message: "the query engine is shut down".into(),
                    })?;
            let state = self.session()?;
            let mut plan = self.plan(&state, query).await?;
            if !params.is_empty() {
                // Clients bind what their language has (Python's ints are Int64): cast each
                // value to the type the statement infers for its placeholder.
                let types = plan.get_parameter_types().map_err(|e| self.error(e))?;
                let values = params
                    .iter()
                    .enumerate()
                    .map(
                        |(i, value)| match types.get(&format!("${}", i + 1)).cloned().flatten() {
                            Some(wanted) if wanted != value.data_type() => {
                                value.cast_to(&wanted).map_err(|e| self.error(e))
                            }
                            _ => Ok(value.clone()),
                        },
                    )
                    .collect::<Result<Vec<_>, QueryError>>()?;
                plan = plan.with_param_values(values).map_err(|e| self.error(e))?;
            }
            let physical = state
                .create_physical_plan(&plan)
                .await
                .map_err(|e| self.error(e))?;
            let stream = datafusion::physical_plan::execute_stream(physical, state.task_ctx())
                .map_err(|e| self.error(e))?;
            Ok::<_, QueryError>((stream, turn))
        };
        let began = Instant::now();
        let started = self
            .with_deadline(deadline, start)
            .await
            .and_then(|started| started);
        let (stream, turn) = match started {
            Ok(started) => started,
            Err(error) => {
                if let Some(metrics) = &self.metrics {
                    metrics.query_finished(began.elapsed(), false);
                }
                return Err(error);
            }
        };
        let recorder = self
            .metrics
            .clone()
            .map(|metrics| Recorder { metrics, began });
        Ok(QueryStream::new(
            stream,
            turn,
            deadline,
            self.args.clone(),
            recorder,
        ))
    }

    async fn with_deadline<T>(
        &self,
        deadline: Instant,
        work: impl Future<Output = T>,
    ) -> Result<T, QueryError> {
        tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| QueryError::Timeout {
                seconds: self.args.timeout,
            })
    }

    fn error(&self, error: DataFusionError) -> QueryError {
        QueryError::from_datafusion(error, &self.args)
    }

    /// A session for one query: the base state with a fresh memory pool.
    fn session(&self) -> Result<SessionState, QueryError> {
        let limit = usize::try_from(self.args.memory).unwrap_or(usize::MAX);
        let pool = TrackConsumersPool::new(
            GreedyMemoryPool::new(limit),
            NonZeroUsize::MIN.saturating_add(2),
        );
        let runtime = RuntimeEnvBuilder::from_runtime_env(&self.runtime)
            .with_memory_pool(Arc::new(pool))
            .build_arc()
            .map_err(|e| self.error(e))?;
        Ok(SessionStateBuilder::new_from_existing(self.base.clone())
            .with_runtime_env(runtime)
            .build())
    }

    /// Parses, checks and plans one read-only statement.
    async fn plan(&self, state: &SessionState, query: &str) -> Result<LogicalPlan, QueryError> {
        let dialect = GenericDialect {};
        let recursion_limit = state.config().options().sql_parser.recursion_limit.get();
        let mut statements = DFParserBuilder::new(query)
            .with_dialect(&dialect)
            .with_recursion_limit(recursion_limit)
            .build()
            .and_then(|mut parser| parser.parse_statements())
            .map_err(|e| self.error(e))?;
        for statement in &statements {
            check_statement(statement)?;
        }
        let statement = match statements.len() {
            1 => statements
                .pop_front()
                .ok_or(QueryError::StatementCount { count: 0 })?,
            count => return Err(QueryError::StatementCount { count }),
        };
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(|e| self.error(e))?;
        check_plan(&plan)?;
        Ok(plan)
    }
}

/// Accepts only statements that read: queries, `EXPLAIN` of a query, `DESCRIBE`, `SHOW TABLES`
/// and `SHOW COLUMNS`.
fn check_statement(statement: &DfStatement) -> Result<(), QueryError> {
    let read_only = |what: &str| {
        Err(QueryError::ReadOnly {
            what: what.to_string(),
        })
    };
    match statement {
        DfStatement::Statement(statement) => check_sql_statement(statement),
        DfStatement::Explain(explain) => check_statement(&explain.statement),
        DfStatement::CreateExternalTable(_) => read_only("CREATE EXTERNAL TABLE"),
        DfStatement::CopyTo(_) => read_only("COPY"),
        DfStatement::Reset(_) => read_only("RESET"),
    }
}

fn check_sql_statement(statement: &Statement) -> Result<(), QueryError> {
    match statement {
        Statement::Query(query) => match query.body.as_ref() {
            SetExpr::Select(select) if select.into.is_some() => Err(QueryError::ReadOnly {
                what: "SELECT INTO".into(),
            }),
            _ => Ok(()),
        },
        Statement::Explain { statement, .. } => check_sql_statement(statement),
        Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. } => Ok(()),
        other => Err(QueryError::ReadOnly {
            what: statement_kind(&other.to_string()),
        }),
    }
}

/// The kind of a statement from its text: `INSERT`, `SET`, `CREATE TABLE`, `DROP VIEW` …
pub(crate) fn statement_kind(text: &str) -> String {
    const MODIFIERS: [&str; 11] = [
        "OR",
        "REPLACE",
        "TEMPORARY",
        "TEMP",
        "MATERIALIZED",
        "UNIQUE",
        "GLOBAL",
        "LOCAL",
        "SECURE",
        "RECURSIVE",
        "TRANSIENT",
    ];
    let mut words = text.split_whitespace().map(str::to_ascii_uppercase);
    let Some(first) = words.next() else {
        return "an empty statement".into();
    };
    if matches!(first.as_str(), "CREATE" | "DROP" | "ALTER")
        && let Some(object) = words.find(|word| !MODIFIERS.contains(&word.as_str()))
    {
        return format!("{first} {object}");
    }
    first
}

/// Rejects plans that would change anything (a second line of defence after
/// [`check_statement`], for statements that plan into DDL or DML, such as `SELECT INTO`).
fn check_plan(plan: &LogicalPlan) -> Result<(), QueryError> {
    let read_only = |what: String| Err(QueryError::ReadOnly { what });
    match plan {
        LogicalPlan::Ddl(ddl) => read_only(match ddl {
            DdlStatement::CreateExternalTable(_) => "CREATE EXTERNAL TABLE".into(),
            DdlStatement::CreateMemoryTable(_) => "CREATE TABLE".into(),
            DdlStatement::CreateView(_) => "CREATE VIEW".into(),
            other => other.name().to_string(),
        }),
        LogicalPlan::Dml(dml) => read_only(dml.op.to_string().to_ascii_uppercase()),
        LogicalPlan::Copy(_) => read_only("COPY".into()),
        LogicalPlan::Statement(statement) => read_only(statement.name().to_ascii_uppercase()),
        _ => datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(plan)
            .map_err(|error| QueryError::ReadOnly {
                what: error.strip_backtrace(),
            }),
    }
}

/// A query's result as a stream of batches, under the query's time and row limits.
pub struct QueryStream {
    schema: SchemaRef,
    inner: Pin<Box<dyn Stream<Item = Result<RecordBatch, QueryError>> + Send>>,
}

impl fmt::Debug for QueryStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryStream")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// Reports a query to the metrics when its stream ends or is dropped.
struct Recorder {
    metrics: Arc<crate::metrics::Metrics>,
    began: Instant,
}

struct Running {
    batches: mpsc::Receiver<Result<RecordBatch, DataFusionError>>,
    rows: u64,
    done: bool,
    failed: bool,
    recorder: Option<Recorder>,
    /// Stops the query when the stream ends or is dropped.
    _task: AbortOnDrop,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(recorder) = &self.recorder {
            recorder
                .metrics
                .query_finished(recorder.began.elapsed(), !self.failed);
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl QueryStream {
    /// Runs `stream` on its own task, so that the deadline is noticed even while an operator
    /// computes for a long time without yielding (on a multi-threaded runtime); the task and its
    /// turn end when the consumer stops, at the query's next yield.
    fn new(
        stream: SendableRecordBatchStream,
        turn: OwnedSemaphorePermit,
        deadline: Instant,
        args: QueryArgs,
        recorder: Option<Recorder>,
    ) -> Self {
        let schema = stream.schema();
        let (sender, batches) = mpsc::channel(2);
        let task = tokio::spawn(async move {
            let _turn = turn;
            let mut stream = stream;
            while let Some(batch) = stream.next().await {
                if sender.send(batch).await.is_err() {
                    break;
                }
            }
        });
        let running = Running {
            batches,
            rows: 0,
            done: false,
            failed: false,
            recorder,
            _task: AbortOnDrop(task),
        };
        let inner = futures::stream::unfold(running, move |mut running| {
            let args = args.clone();
            async move {
                if running.done {
                    return None;
                }
                let next = match tokio::time::timeout_at(deadline, running.batches.recv()).await {
                    Err(_) => Err(QueryError::Timeout {
                        seconds: args.timeout,
                    }),
                    Ok(None) => return None,
                    Ok(Some(Err(error))) => Err(QueryError::from_datafusion(error, &args)),
                    Ok(Some(Ok(batch))) => {
                        running.rows += batch.num_rows() as u64;
                        if args.max_rows > 0 && running.rows > args.max_rows {
                            Err(QueryError::TooManyRows {
                                limit: args.max_rows,
                            })
                        } else {
                            Ok(batch)
                        }
                    }
                };
                running.done = next.is_err();
                running.failed |= next.is_err();
                Some((next, running))
            }
        });
        Self {
            schema,
            inner: Box::pin(inner),
        }
    }

    /// The schema of the batches.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch, QueryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Opens the data of a collector that is not running (`tapedeck sql --data DIR`): the Parquet
/// store (`store_url`, or `DIR/store`) plus the exchanges in `DIR/wal` that were acknowledged
/// but not yet flushed. Do not use it on the data directory of a running collector; query the
/// collector instead.
pub async fn open_offline(
    data: &Path,
    store_url: Option<&str>,
    args: &QueryArgs,
) -> crate::Result<QueryEngine> {
    let handle = crate::store::open_store(data, store_url)?;
    let buffer = Arc::new(Buffer::new());
    for batch in
        crate::wal::read_dir_with_store(&crate::config::wal_dir(data), &handle.store).await?
    {
        buffer.insert(&batch.exchanges)?;
    }
    QueryEngine::with_listing_cache(handle.store, buffer, args, handle.changes)
}

/// `tapedeck sql`: one read-only statement, on a running collector (`--collector`, Flight SQL)
/// or on the data directory of a stopped one (`--data`, `--store`).
#[derive(Debug, Clone, clap::Args)]
pub struct SqlArgs {
    /// The statement to run, for example
    /// "SELECT service, count(*) FROM exchanges WHERE start_time > now() - INTERVAL '1 hour' GROUP BY 1".
    #[arg(value_name = "SQL")]
    pub query: String,

    /// Flight SQL address of a running collector (`http://host:port`); without it, --data and
    /// --store are read directly (do not do that while a collector writes to them).
    #[arg(long, env = "TAPEDECK_COLLECTOR", value_name = "URL")]
    pub collector: Option<String>,

    /// Bearer token for --collector (the collector's --token).
    #[arg(
        long,
        env = "TAPEDECK_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Data directory of a stopped collector: its write-ahead log (`wal/`) and, unless --store is
    /// given, its Parquet store (`store/`).
    #[arg(
        long,
        env = "TAPEDECK_DATA",
        value_name = "DIR",
        default_value = "./tapedeck-data"
    )]
    pub data: PathBuf,

    /// Where the Parquet files are, when not in DIR/store: `file:///absolute/path` or
    /// `s3://bucket/prefix`.
    #[arg(long, env = "TAPEDECK_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// How to print the result (binary values print as hex).
    #[arg(
        long,
        env = "TAPEDECK_FORMAT",
        value_enum,
        default_value_t = OutputFormat::Table
    )]
    pub format: OutputFormat,

    /// Limits for the query when it runs here (with --collector, the collector's apply).
    #[command(flatten)]
    pub limits: QueryArgs,
}

/// Why `tapedeck sql` failed.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The data directory or store could not be opened.
    #[error("opening {path}: {source}", path = path.display())]
    Open {
        /// The data directory.
        path: PathBuf,
        /// What failed.
        source: crate::Error,
    },
    /// The query failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The collector could not be asked, or refused.
    #[error(transparent)]
    Remote(#[from] crate::flight::ClientError),
    /// The result could not be printed.
    #[error("printing the result: {0}")]
    Format(#[from] datafusion::arrow::error::ArrowError),
}

/// Runs `tapedeck sql` and returns what it prints.
pub async fn run_sql(args: &SqlArgs) -> Result<String, SqlError> {
    let (schema, batches) = match &args.collector {
        Some(address) => {
            crate::flight::query_remote(address, args.token.as_deref(), &args.query).await?
        }
        None => {
            let engine = open_offline(&args.data, args.store.as_deref(), &args.limits)
                .await
                .map_err(|source| SqlError::Open {
                    path: args.data.clone(),
                    source,
                })?;
            engine.sql(&args.query).await?
        }
    };
    Ok(format_batches(&schema, &batches, args.format)?)
}
