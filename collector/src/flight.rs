//! Arrow Flight SQL over the [`QueryEngine`], and the client `tapedeck sql --collector` uses.
//!
//! Served: statement queries (`CommandStatementQuery` → `GetFlightInfo`, whose one endpoint's
//! ticket carries the SQL, then `DoGet`), prepared statements without parameters (the handle is
//! the SQL; what JDBC and ADBC drivers use), `GetSqlInfo` (server name, version, read-only) and
//! `Handshake`. Updates and ingest answer `PERMISSION_DENIED`; everything else (catalog
//! metadata, parameter binding, transactions, Substrait) answers `UNIMPLEMENTED` with a message
//! saying what is served. Errors map to statuses in one place (`From<QueryError> for Status`):
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

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, Command, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementIngest, CommandStatementQuery, CommandStatementUpdate, ProstMessageExt,
    SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use futures::{Stream, TryStreamExt};
use tapedeck_proto::prost::Message as _;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status, Streaming};

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
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
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
        if header.is_some_and(|header| credentials_match(header, token)) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("missing or wrong bearer token"))
        }
    }
}

/// Whether an `authorization` header carries the token (as a bearer token, or as the password
/// of basic authentication).
fn credentials_match(header: &str, token: &str) -> bool {
    let Some((scheme, value)) = header.trim().split_once(' ') else {
        return false;
    };
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return constant_time_eq(value.as_bytes(), token.as_bytes());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = BASE64.decode(value) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|b| *b == b':') else {
            return false;
        };
        return constant_time_eq(&decoded[colon + 1..], token.as_bytes());
    }
    false
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The Flight SQL service.
struct FlightSqlServer {
    engine: Arc<QueryEngine>,
    token: Option<String>,
    sql_info: SqlInfoData,
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
        Ok(Self {
            engine,
            token,
            sql_info: info.build().map_err(|error| crate::Error::Arrow {
                source: ArrowError::ExternalError(Box::new(error)),
            })?,
        })
    }

    /// Runs a query and streams its result as Flight data.
    async fn run(&self, query: &str) -> Result<Response<DoGetStream>, Status> {
        let stream = self.engine.sql_stream(query).await?;
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

type DoGetStream =
    Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not supported; tapedeck serves read-only queries (statements and prepared \
         statements without parameters) and GetSqlInfo"
    ))
}

/// The SQL of a ticket or prepared statement handle.
fn sql_of(handle: &[u8]) -> Result<String, Status> {
    String::from_utf8(handle.to_vec())
        .map_err(|_| Status::invalid_argument("the handle does not hold a UTF-8 SQL statement"))
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
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.into_bytes().into(),
            dataset_schema,
            parameter_schema: Default::default(),
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
        let schema = self
            .engine
            .schema(&sql_of(&query.prepared_statement_handle)?)
            .await?;
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
        self.run(&sql_of(&query.prepared_statement_handle)?).await
    }

    async fn get_flight_info_catalogs(
        &self,
        _query: CommandGetCatalogs,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(unimplemented(
            "GetCatalogs (query information_schema instead)",
        ))
    }

    async fn get_flight_info_schemas(
        &self,
        _query: CommandGetDbSchemas,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(unimplemented(
            "GetDbSchemas (query information_schema instead)",
        ))
    }

    async fn get_flight_info_tables(
        &self,
        _query: CommandGetTables,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(unimplemented(
            "GetTables (query information_schema instead)",
        ))
    }

    async fn get_flight_info_table_types(
        &self,
        _query: CommandGetTableTypes,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(unimplemented("GetTableTypes"))
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
