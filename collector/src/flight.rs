//! Arrow Flight SQL over the [`QueryEngine`], and the client `tapedeck sql --collector` uses.
//!
//! Served: statement queries (`CommandStatementQuery` → `GetFlightInfo`, whose one endpoint's
//! ticket carries the SQL, then `DoGet`), prepared statements with or without parameters
//! (`$1`, `$2`, … bound by `DoPut` of a one-row batch; the handle carries the SQL and the bound
//! values, so the server keeps no state per statement; what JDBC and ADBC drivers use), the
//! catalog calls tools browse with (`GetCatalogs`: `datafusion`; `GetDbSchemas`: `public`;
//! `GetTables`, with the Arrow schema when asked: `exchanges`; `GetTableTypes`; `GetSqlInfo`;
//! `GetXdbcTypeInfo`) and `Handshake`. Updates and ingest answer `PERMISSION_DENIED`; the rest
//! (keys, transactions, Substrait) answers `UNIMPLEMENTED` with a message saying what is
//! served. Errors map to statuses in one place (`From<QueryError> for Status`):
//! read-only → `PERMISSION_DENIED`, invalid SQL or a failing expression → `INVALID_ARGUMENT`,
//! time limit → `DEADLINE_EXCEEDED`, memory or row limit → `RESOURCE_EXHAUSTED`, the
//! collector's own failures → `INTERNAL` (details only in the log).
//!
//! With a token configured, every call must carry `authorization: Bearer <token>`, or
//! `authorization: Basic <base64(user:token)>` (any user name) for clients that log in with a
//! user and password; `Handshake` answers with the bearer header, as Flight SQL clients expect.
//! Anything else gets `UNAUTHENTICATED`.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, Command, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, Nullable, ProstMessageExt, Searchable,
    SqlInfo, TicketStatementQuery, XdbcDataType,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::common::ScalarValue;
use futures::{Stream, TryStreamExt};
use tapedeck_proto::prost::Message as _;
use tokio::net::TcpListener;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Schemes, credentials_match};
use crate::query::{QueryEngine, QueryError};

/// Largest message the client accepts (one record batch message); the server splits batches
/// into messages of about 2 MiB, but one row with large bodies can exceed that.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The one place query errors become gRPC statuses.
impl From<QueryError> for Status {
    fn from(error: QueryError) -> Self {
        match &error {
            QueryError::ReadOnly { .. } => Status::permission_denied(error.to_string()),
            QueryError::StatementCount { .. }
            | QueryError::InvalidSql { .. }
            | QueryError::Failed { .. } => Status::invalid_argument(error.to_string()),
            QueryError::Timeout { .. } => Status::deadline_exceeded(error.to_string()),
            QueryError::MemoryLimit { .. } | QueryError::TooManyRows { .. } => {
                Status::resource_exhausted(error.to_string())
            }
            QueryError::Internal { .. } => {
                tracing::error!(%error, "Query failed.");
                Status::internal("query failed; see the collector log")
            }
        }
    }
}

/// Errors of [`query_remote`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not a usable URL.
    #[error("collector address {address:?}: {reason}")]
    Address {
        /// The address as given.
        address: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Connecting to the collector failed.
    #[error("connecting to {address}: {source}")]
    Connect {
        /// The URL.
        address: String,
        /// tonic's error.
        source: tonic::transport::Error,
    },
    /// The collector answered with an error status.
    #[error("collector answered {:?}: {}", .0.code(), .0.message())]
    Status(Box<Status>),
    /// The Flight SQL exchange failed otherwise (decoding, protocol).
    #[error("flight sql: {0}")]
    Flight(FlightError),
}

impl ClientError {
    /// The gRPC status code, if the collector answered with an error status.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status(status) => Some(status.code()),
            _ => None,
        }
    }
}

impl From<FlightError> for ClientError {
    fn from(error: FlightError) -> Self {
        match error {
            FlightError::Tonic(status) => ClientError::Status(status),
            other => ClientError::Flight(other),
        }
    }
}

/// Serves Flight SQL on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<QueryEngine>,
    token: Option<String>,
    shutdown: impl Future<Output = ()>,
) -> crate::Result<()> {
    let service = FlightSqlServer::new(engine, token.clone())?;
    let service = FlightServiceServer::with_interceptor(
        service,
        Auth {
            token: token.map(Arc::from),
        },
    );
    Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(crate::accept_without_delay(listener), shutdown)
        .await?;
    Ok(())
}

/// Runs one query on a collector's Flight SQL endpoint (`http://host:port`, or `host:port`).
pub async fn query_remote(
    address: &str,
    token: Option<&str>,
    sql: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>), ClientError> {
    let url = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    let endpoint = Endpoint::from_shared(url.clone()).map_err(|error| ClientError::Address {
        address: address.to_string(),
        reason: error.to_string(),
    })?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|source| ClientError::Connect {
            address: url,
            source,
        })?;
    let inner = FlightServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let mut client = FlightSqlServiceClient::new_from_inner(inner);
    if let Some(token) = token {
        client.set_token(token.to_string());
    }
    let info = client.execute(sql.to_string(), None).await?;
    let schema = Arc::new(
        info.clone()
            .try_decode_schema()
            .map_err(FlightError::Arrow)?,
    );
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let Some(ticket) = endpoint.ticket else {
            continue;
        };
        let stream = client.do_get(ticket).await?;
        batches.extend(stream.try_collect::<Vec<_>>().await?);
    }
    Ok((schema, batches))
}

/// Checks the token on every call.
#[derive(Clone)]
struct Auth {
    token: Option<Arc<str>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Interceptor for Auth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else {
            return Ok(request);
        };
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok());
        if header.is_some_and(|header| {
            credentials_match(header.as_bytes(), token.as_bytes(), Schemes::BearerOrBasic)
        }) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("missing or wrong bearer token"))
        }
    }
}

/// The Flight SQL service.
struct FlightSqlServer {
    engine: Arc<QueryEngine>,
    token: Option<String>,
    sql_info: SqlInfoData,
    xdbc: XdbcTypeInfoData,
}

impl fmt::Debug for FlightSqlServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlightSqlServer")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl FlightSqlServer {
    fn new(engine: Arc<QueryEngine>, token: Option<String>) -> crate::Result<Self> {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "tapedeck");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        info.append(SqlInfo::FlightSqlServerCancel, false);
        info.append(SqlInfo::SqlDdlCatalog, false);
        info.append(SqlInfo::SqlDdlSchema, false);
        info.append(SqlInfo::SqlDdlTable, false);
        info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        info.append(SqlInfo::SqlQuotedIdentifierCase, 3i64);
        info.append(SqlInfo::SqlIdentifierCase, 2i64);
        info.append(SqlInfo::SqlAllTablesAreSelectable, true);
        info.append(SqlInfo::SqlTransactionsSupported, false);
        let arrow = |error: FlightError| crate::Error::Arrow {
            source: ArrowError::ExternalError(Box::new(error)),
        };
        Ok(Self {
            engine,
            token,
            sql_info: info.build().map_err(arrow)?,
            xdbc: xdbc_types().map_err(arrow)?,
        })
    }

    /// Runs a query and streams its result as Flight data.
    async fn run(&self, query: &str) -> Result<Response<DoGetStream>, Status> {
        self.run_with(query, &[]).await
    }

    /// [`FlightSqlServer::run`] with placeholder values.
    async fn run_with(
        &self,
        query: &str,
        params: &[ScalarValue],
    ) -> Result<Response<DoGetStream>, Status> {
        let stream = self.engine.sql_stream_with(query, params).await?;
        let schema = stream.schema();
        let batches = stream.map_err(|error| FlightError::Tonic(Box::new(Status::from(error))));
        let data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(data)))
    }

    fn info(
        &self,
        schema: &datafusion::arrow::datatypes::Schema,
        ticket: Ticket,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        Ok(FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|error| Status::internal(format!("encoding the result schema: {error}")))?
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(descriptor))
    }
}

/// The schema of `GetTableTypes` results.
fn table_types_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "table_type",
        DataType::Utf8,
        false,
    )]))
}

type DoGetStream =
    Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not supported; tapedeck serves read-only queries (statements and prepared \
         statements with parameters) and the catalog calls (GetCatalogs, GetDbSchemas, \
         GetTables, GetTableTypes, GetSqlInfo, GetXdbcTypeInfo)"
    ))
}

/// The SQL of a ticket.
fn sql_of(handle: &[u8]) -> Result<String, Status> {
    String::from_utf8(handle.to_vec())
        .map_err(|_| Status::invalid_argument("the handle does not hold a UTF-8 SQL statement"))
}

/// The first byte of a prepared statement handle with bound parameters (SQL text never starts
/// with it): then a u32 LE SQL length, the SQL, and the parameters as one Arrow IPC stream.
const BOUND: u8 = 0;

/// A prepared statement handle: its SQL, and the values bound to its placeholders.
fn bound_handle(sql: &str, params: Option<&RecordBatch>) -> Result<bytes::Bytes, Status> {
    let Some(params) = params else {
        return Ok(bytes::Bytes::copy_from_slice(sql.as_bytes()));
    };
    let mut out = vec![BOUND];
    let len =
        u32::try_from(sql.len()).map_err(|_| Status::invalid_argument("statement too long"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(sql.as_bytes());
    let encoded = (|| {
        let mut writer =
            datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut out, &params.schema())?;
        writer.write(params)?;
        writer.finish()
    })();
    encoded.map_err(|error| Status::internal(format!("encoding parameters: {error}")))?;
    Ok(out.into())
}

/// The SQL and parameter values of a prepared statement handle.
fn parse_handle(handle: &[u8]) -> Result<(String, Vec<ScalarValue>), Status> {
    let Some(rest) = handle.strip_prefix(&[BOUND]) else {
        return Ok((sql_of(handle)?, Vec::new()));
    };
    let bad = || Status::invalid_argument("malformed prepared statement handle");
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
    let len = u32::from_le_bytes(*len) as usize;
    let (sql, ipc) = rest.split_at_checked(len).ok_or_else(bad)?;
    let sql = sql_of(sql)?;
    let reader =
        datafusion::arrow::ipc::reader::StreamReader::try_new(ipc, None).map_err(|_| bad())?;
    let mut params = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|_| bad())?;
        params = row_values(&batch)?;
    }
    Ok((sql, params))
}

/// The values of a parameter batch's one row.
fn row_values(batch: &RecordBatch) -> Result<Vec<ScalarValue>, Status> {
    if batch.num_rows() != 1 {
        return Err(Status::invalid_argument(format!(
            "bind one row of parameters, not {} (batches of parameter sets are not supported)",
            batch.num_rows()
        )));
    }
    batch
        .columns()
        .iter()
        .map(|column| {
            ScalarValue::try_from_array(column, 0)
                .map_err(|error| Status::invalid_argument(format!("parameter value: {error}")))
        })
        .collect()
}

/// The catalog, schema and table names tools see.
const CATALOG: &str = "datafusion";
const SCHEMA: &str = "public";

/// The SQL types of the table's columns, for `GetXdbcTypeInfo`.
fn xdbc_types() -> Result<XdbcTypeInfoData, FlightError> {
    let mut builder = XdbcTypeInfoDataBuilder::new();
    let types = [
        ("BOOLEAN", XdbcDataType::XdbcBit, None, None),
        ("SMALLINT", XdbcDataType::XdbcSmallint, Some(16), Some(2)),
        ("INTEGER", XdbcDataType::XdbcInteger, Some(32), Some(2)),
        ("BIGINT", XdbcDataType::XdbcBigint, Some(64), Some(2)),
        ("REAL", XdbcDataType::XdbcReal, Some(24), Some(2)),
        ("DOUBLE", XdbcDataType::XdbcDouble, Some(53), Some(2)),
        ("VARCHAR", XdbcDataType::XdbcVarchar, None, None),
        ("VARBINARY", XdbcDataType::XdbcVarbinary, None, None),
        ("TIMESTAMP", XdbcDataType::XdbcTimestamp, None, None),
    ];
    for (name, data_type, column_size, radix) in types {
        let quoted = matches!(
            data_type,
            XdbcDataType::XdbcVarchar | XdbcDataType::XdbcTimestamp
        );
        builder.append(XdbcTypeInfo {
            type_name: name.into(),
            data_type,
            column_size,
            literal_prefix: quoted.then(|| "'".into()),
            literal_suffix: quoted.then(|| "'".into()),
            create_params: None,
            nullable: Nullable::NullabilityNullable,
            case_sensitive: data_type == XdbcDataType::XdbcVarchar,
            searchable: Searchable::Full,
            unsigned_attribute: column_size.map(|_| false),
            fixed_prec_scale: false,
            auto_increment: column_size.map(|_| false),
            local_type_name: Some(name.into()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: data_type,
            datetime_subcode: None,
            num_prec_radix: radix,
            interval_precision: None,
        });
    }
    builder.build()
}

/// One record batch as a `DoGet` answer.
fn batch_response(schema: SchemaRef, batch: RecordBatch) -> Response<DoGetStream> {
    let data = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter([Ok(batch)]))
        .map_err(Status::from);
    Response::new(Box::pin(data))
}

fn metadata_error(error: impl fmt::Display) -> Status {
    Status::internal(format!("building catalog metadata: {error}"))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlServer {
    type FlightService = FlightSqlServer;

    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        // The interceptor has checked the credentials already.
        let output: Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>> =
            Box::pin(futures::stream::iter([Ok(HandshakeResponse::default())]));
        let mut response = Response::new(output);
        if let Some(token) = &self.token {
            let value = MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| Status::internal("the token is not a valid header value"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.engine.schema(&query.query).await?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        let ticket = Ticket::new(ticket.as_any().encode_to_vec());
        Ok(Response::new(self.info(
            &schema,
            ticket,
            request.into_inner(),
        )?))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.run(&sql_of(&ticket.statement_handle)?).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let schema = self.engine.schema(&query.query).await?;
        let IpcMessage(dataset_schema) = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|error| Status::internal(format!("encoding the result schema: {error}")))?;
        let parameters = self.engine.parameter_types(&query.query).await?;
        let parameter_schema = if parameters.is_empty() {
            Default::default()
        } else {
            let fields: Vec<Field> = parameters
                .into_iter()
                .map(|(name, data_type)| {
                    Field::new(name, data_type.unwrap_or(DataType::Utf8), true)
                })
                .collect();
            let IpcMessage(bytes) =
                SchemaAsIpc::new(&Schema::new(fields), &IpcWriteOptions::default())
                    .try_into()
                    .map_err(|error| {
                        Status::internal(format!("encoding the parameter schema: {error}"))
                    })?;
            bytes
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.into_bytes().into(),
            dataset_schema,
            parameter_schema,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        // Nothing is held per prepared statement.
        Ok(())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let (sql, _) = parse_handle(&query.prepared_statement_handle)?;
        let schema = self.engine.schema(&sql).await?;
        let ticket = Ticket::new(query.as_any().encode_to_vec());
        Ok(Response::new(self.info(
            &schema,
            ticket,
            request.into_inner(),
        )?))
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let (sql, params) = parse_handle(&query.prepared_statement_handle)?;
        self.run_with(&sql, &params).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let (sql, _) = parse_handle(&query.prepared_statement_handle)?;
        let data = request
            .into_inner()
            .map_err(|status| FlightError::Tonic(Box::new(status)));
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(data)
            .try_collect()
            .await
            .map_err(|error| Status::invalid_argument(format!("reading parameters: {error}")))?;
        let params = match batches.as_slice() {
            [] => None,
            [batch] => {
                row_values(batch)?;
                Some(batch)
            }
            more => {
                return Err(Status::invalid_argument(format!(
                    "bind one batch of one row, not {} batches",
                    more.len()
                )));
            }
        };
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(bound_handle(&sql, params)?),
        })
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        let ticket = Ticket::new(query.as_any().encode_to_vec());
        Ok(Response::new(self.info(
            &schema,
            ticket,
            request.into_inner(),
        )?))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        let schema = builder.schema();
        Ok(batch_response(
            schema,
            builder.build().map_err(metadata_error)?,
        ))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        let ticket = Ticket::new(query.as_any().encode_to_vec());
        Ok(Response::new(self.info(
            &schema,
            ticket,
            request.into_inner(),
        )?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG, SCHEMA);
        let schema = builder.schema();
        Ok(batch_response(
            schema,
            builder.build().map_err(metadata_error)?,
        ))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        let ticket = Ticket::new(query.as_any().encode_to_vec());
        Ok(Response::new(self.info(
            &schema,
            ticket,
            request.into_inner(),
        )?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder
            .append(
                CATALOG,
                SCHEMA,
                crate::query::TABLE_NAME,
                "TABLE",
                &crate::query::table_schema(),
            )
            .map_err(metadata_error)?;
        let schema = builder.schema();
        Ok(batch_response(
            schema,
            builder.build().map_err(metadata_error)?,
        ))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = Ticket::new(query.as_any().encode_to_vec());
        Ok(Response::new(self.info(
            &table_types_schema(),
            ticket,
            request.into_inner(),
        )?))
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let schema = table_types_schema();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(datafusion::arrow::array::StringArray::from(vec![
                "TABLE",
            ]))],
        )
        .map_err(metadata_error)?;
        Ok(batch_response(schema, batch))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&self.xdbc).schema();
        let ticket = Ticket::new(query.as_any().encode_to_vec());
        Ok(Response::new(self.info(
            &schema,
            ticket,
            request.into_inner(),
        )?))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let builder = query.into_builder(&self.xdbc);
        let schema = builder.schema();
        Ok(batch_response(
            schema,
            builder.build().map_err(metadata_error)?,
        ))
    }

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(Status::permission_denied(
            "read-only: updates are not allowed",
        ))
    }

    async fn do_put_statement_ingest(
        &self,
        _ticket: CommandStatementIngest,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(Status::permission_denied(
            "read-only: ingest is not allowed",
        ))
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(unimplemented("BeginTransaction"))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        let ticket = Ticket::new(query.as_any().encode_to_vec());
        Ok(Response::new(self.info(
            &schema,
            ticket,
            request.into_inner(),
        )?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let builder = query.into_builder(&self.sql_info);
        let schema = builder.schema();
        let batch = builder
            .build()
            .map_err(|error| Status::internal(format!("sql info: {error}")))?;
        let data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::iter([Ok(batch)]))
            .map_err(Status::from);
        Ok(Response::new(Box::pin(data)))
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<DoGetStream>, Status> {
        Err(unimplemented(&format!("DoGet of {}", message.type_url)))
    }

    async fn get_flight_info_fallback(
        &self,
        command: Command,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(unimplemented(&format!(
            "GetFlightInfo of {}",
            command.type_url()
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
