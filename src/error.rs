//! The one error type of the extension, mapped to SQLSTATEs.
//!
//! | kind              | SQLSTATE | HTTP |
//! |-------------------|----------|------|
//! | Validation        | 22023    | 400  |
//! | IllegalTransition | 23514    | 409  |
//! | NotFound          | P0002    | 404  |
//! | Conflict          | 23505    | 409  |
//! | NotAuthorized     | 42501    | 403  |
//! | Unauthenticated   | 28000    | 401  |
//!
//! The message is one line, the detail is JSON naming each bad field, the hint says what to do.
//! Functions the HTTP door reaches return errors as data ([`as_json`]) and their SQL caller
//! raises them through `invoices_internal.raise`, which during a PostgREST request raises
//! PostgREST's `PGRST` error carrying the HTTP status above and the rate-limit headers.

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
        ErrorKind::Unauthenticated => PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
    }
}

fn sqlstate_text(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Validation => "22023",
        ErrorKind::IllegalTransition => "23514",
        ErrorKind::NotFound => "P0002",
        ErrorKind::Conflict => "23505",
        ErrorKind::NotAuthorized => "42501",
        ErrorKind::Unauthenticated => "28000",
    }
}

/// The error as data, `{"error": {code, message, detail, hint}}`, for functions the HTTP door
/// calls: their SQL caller raises it through `invoices_internal.raise`, which can answer with
/// PostgREST's PGRST error (a SQLSTATE pgrx does not know could not pass through pgrx).
pub fn as_json(e: &DomainError) -> serde_json::Value {
    serde_json::json!({ "error": {
        "code": sqlstate_text(e.kind),
        "message": e.message,
        "detail": e.detail_json(),
        "hint": e.hint,
    }})
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
