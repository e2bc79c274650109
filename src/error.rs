//! The one error type of the extension, mapped to SQLSTATEs.
//!
//! | kind              | SQLSTATE | PostgREST |
//! |-------------------|----------|-----------|
//! | Validation        | 22023    | 400       |
//! | IllegalTransition | 23514    | 400       |
//! | NotFound          | P0002    | 404 (via the pre-request mapping of issue 4) |
//! | Conflict          | 23505    | 409       |
//! | NotAuthorized     | 42501    | 401/403   |
//!
//! The message is one line, the detail is JSON naming each bad field, the hint says what to do.

use crate::domain::{DomainError, ErrorKind};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

pub fn sqlstate(kind: ErrorKind) -> PgSqlErrorCode {
    match kind {
        ErrorKind::Validation => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        ErrorKind::IllegalTransition => PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
        ErrorKind::NotFound => PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
        ErrorKind::Conflict => PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
        ErrorKind::NotAuthorized => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
    }
}

/// Raises `e` as a PostgreSQL ERROR; never returns.
pub fn raise(e: DomainError) -> ! {
    let mut report = ErrorReport::new(sqlstate(e.kind), e.message.clone(), "invoices");
    if let Some(detail) = e.detail_json() {
        report = report.set_detail(detail);
    }
    if let Some(hint) = e.hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) does not return")
}

/// Unwraps a domain result or raises its error.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T, DomainError> {
    fn or_raise(self) -> T {
        self.unwrap_or_else(|e| raise(e))
    }
}
