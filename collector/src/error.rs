//! The collector's error type, and its one mapping to gRPC status codes.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can fail in the collector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A push larger than `--max-push-bytes`.
    #[error("batch {sequence}: {bytes} bytes is over the limit of {limit} bytes")]
    BatchTooLarge {
        /// The batch's sequence number.
        sequence: u64,
        /// Its encoded size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// One exchange of a pushed batch is not valid; the whole batch is refused.
    #[error("batch {sequence}, exchange {index}: {reason}")]
    InvalidExchange {
        /// The batch's sequence number.
        sequence: u64,
        /// The exchange's index in the batch, from 0.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A push or query without the configured bearer token.
    #[error("missing or wrong bearer token")]
    Unauthenticated,
    /// The buffer holds `--buffer-max-bytes` or more (the store is slow or down).
    #[error("buffer holds {bytes} bytes, at or above its limit of {limit} bytes")]
    BufferFull {
        /// Bytes held.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The data directory's disk has less than `--min-free-disk` free.
    #[error("data disk has {free} bytes free, below the minimum of {min} bytes")]
    DiskFull {
        /// Free bytes.
        free: u64,
        /// The minimum.
        min: u64,
    },
    /// Reading or writing the write-ahead log failed.
    #[error("write-ahead log {path}: {source}", path = path.display())]
    Wal {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A write-ahead log record that is not the torn tail of the last segment is damaged.
    #[error("write-ahead log {path}, offset {offset}: {reason}", path = path.display())]
    WalCorrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the damaged record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The write-ahead log refuses appends after a failed write until the next rotation.
    #[error("write-ahead log is unavailable after an earlier write error: {reason}")]
    WalFailed {
        /// The earlier error.
        reason: String,
    },
    /// The collector is shutting down.
    #[error("collector is shutting down")]
    ShuttingDown,
    /// A `--store` URL that cannot be used.
    #[error("store URL {url:?}: {reason}")]
    StoreUrl {
        /// The URL as given.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// An object store operation failed.
    #[error("object store: {source}")]
    Store {
        /// The store's error (it names the path).
        #[from]
        source: object_store::Error,
    },
    /// A partition manifest or a flush pin in the store cannot be read.
    #[error("manifest {path}: {reason}")]
    Manifest {
        /// The object.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Encoding or decoding a Parquet file failed.
    #[error("parquet file {path}: {source}")]
    Parquet {
        /// The file.
        path: String,
        /// The Parquet error.
        source: parquet::errors::ParquetError,
    },
    /// Converting exchanges to or from Arrow failed.
    #[error("arrow: {source}")]
    Arrow {
        /// The Arrow error.
        #[from]
        source: tapedeck_proto::arrow_schema::ArrowError,
    },
    /// A query failed.
    #[error("query: {source}")]
    Query {
        /// DataFusion's error.
        #[from]
        source: datafusion::error::DataFusionError,
    },
    /// Binding or serving a listener failed.
    #[error("{what} on {addr}: {source}")]
    Listen {
        /// Which endpoint (`gRPC`, `HTTP`, `Flight SQL`).
        what: &'static str,
        /// Its address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server: {source}")]
    Grpc {
        /// tonic's error.
        #[from]
        source: tonic::transport::Error,
    },
    /// Some other I/O failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, and where.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A background task panicked or was cancelled.
    #[error("task {what}: {reason}")]
    Task {
        /// Which task.
        what: &'static str,
        /// What happened.
        reason: String,
    },
}

/// The collector's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short, stable label for metrics (`reason` of rejected pushes).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::BatchTooLarge { .. } => "too_large",
            Error::InvalidExchange { .. } => "invalid",
            Error::Unauthenticated => "unauthenticated",
            Error::BufferFull { .. } => "buffer_full",
            Error::DiskFull { .. } => "disk_full",
            Error::Wal { .. } | Error::WalCorrupt { .. } | Error::WalFailed { .. } => "wal",
            Error::ShuttingDown => "shutting_down",
            _ => "internal",
        }
    }
}

impl From<Error> for tonic::Status {
    /// The one place collector errors become gRPC statuses. Client errors carry their message;
    /// internal ones are logged and answered with a generic message.
    fn from(error: Error) -> Self {
        use datafusion::error::DataFusionError;
        use tonic::Status;
        match &error {
            Error::BatchTooLarge { .. } | Error::InvalidExchange { .. } => {
                Status::invalid_argument(error.to_string())
            }
            Error::Unauthenticated => Status::unauthenticated(error.to_string()),
            Error::BufferFull { .. } | Error::DiskFull { .. } => {
                Status::resource_exhausted(error.to_string())
            }
            Error::ShuttingDown => Status::unavailable(error.to_string()),
            Error::WalFailed { .. } => {
                tracing::error!(%error, "Refused a request.");
                Status::unavailable("collector cannot write its log; retry later")
            }
            Error::Query { source } => match source.find_root() {
                DataFusionError::SQL(..)
                | DataFusionError::Plan(_)
                | DataFusionError::SchemaError(..)
                | DataFusionError::NotImplemented(_) => Status::invalid_argument(error.to_string()),
                DataFusionError::ResourcesExhausted(_) => {
                    Status::resource_exhausted(error.to_string())
                }
                _ => {
                    tracing::error!(%error, "Query failed.");
                    Status::internal("query failed; see the collector log")
                }
            },
            _ => {
                tracing::error!(%error, "Request failed.");
                Status::internal("internal error; see the collector log")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn messages_say_what_and_where() {
        let error = Error::InvalidExchange {
            sequence: 12,
            index: 3,
            reason: "id must be 16 bytes, got 4".into(),
        };
        assert_eq!(
            error.to_string(),
            "batch 12, exchange 3: id must be 16 bytes, got 4"
        );
        let error = Error::WalCorrupt {
            path: "/d/wal/00000000000000000001.wal".into(),
            offset: 40,
            reason: "checksum mismatch".into(),
        };
        assert_eq!(
            error.to_string(),
            "write-ahead log /d/wal/00000000000000000001.wal, offset 40: checksum mismatch"
        );
    }

    #[test]
    fn statuses_have_the_right_codes_and_hide_internals() {
        let code = |error: Error| tonic::Status::from(error).code();
        assert_eq!(code(Error::Unauthenticated), Code::Unauthenticated);
        assert_eq!(
            code(Error::BufferFull { bytes: 2, limit: 1 }),
            Code::ResourceExhausted
        );
        assert_eq!(
            code(Error::DiskFull { free: 1, min: 2 }),
            Code::ResourceExhausted
        );
        assert_eq!(code(Error::ShuttingDown), Code::Unavailable);
        let status = tonic::Status::from(Error::Wal {
            path: "/secret/wal".into(),
            source: std::io::Error::other("disk on fire"),
        });
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"), "{}", status.message());
    }
}
