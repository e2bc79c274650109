//! What can go wrong in a task, by kind. The kind is recorded with the failure
//! (`worker_status.last_error_kind`) and decides what the worker does next: a missing object
//! means the extension was dropped (or is being re-created), and the worker waits for it.

use crate::domain::detect::RpcError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkerError {
    /// PostgreSQL refused a statement, or SPI could not run it.
    #[error("{message}")]
    Spi { message: String, missing_object: bool },
    /// A value that should have been JSON of a known shape was not.
    #[error("unreadable JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A chain node failed to answer, or answered nonsense.
    #[error("{0}")]
    Rpc(#[from] RpcError),
    /// A setting or a row of configuration is unusable (no adapter, no relay address).
    #[error("{0}")]
    Config(String),
    /// A thread of the worker's own is gone.
    #[error("{0}")]
    Thread(String),
}

impl WorkerError {
    /// The name of the kind, as recorded.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            WorkerError::Spi { .. } => "spi",
            WorkerError::Json(_) => "json",
            WorkerError::Rpc(_) => "rpc",
            WorkerError::Config(_) => "config",
            WorkerError::Thread(_) => "thread",
        }
    }

    /// The extension's objects are gone: dropped, or being re-created.
    pub(crate) fn missing_object(&self) -> bool {
        matches!(self, WorkerError::Spi { missing_object: true, .. })
    }

    pub(crate) fn spi(message: impl ToString) -> Self {
        WorkerError::Spi { message: message.to_string(), missing_object: false }
    }
}

impl From<pgrx::spi::SpiError> for WorkerError {
    fn from(e: pgrx::spi::SpiError) -> Self {
        WorkerError::spi(e)
    }
}

/// `?` on a `Result<_, WorkerError>` inside a closure returning `Result<_, String>`, and back.
pub(crate) type Result<T> = std::result::Result<T, WorkerError>;
