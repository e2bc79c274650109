//! The one error type of the domain. The extension maps each kind to a SQLSTATE (see
//! `src/error.rs`), so PostgREST answers with the right 4xx and the field-level details.

use serde::Serialize;
use std::fmt;

/// One bad input field: a JSON path such as `lines[2].quantity` and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// What kind of failure this is; decides the SQLSTATE and the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input: 22023 → HTTP 400, with every bad field listed.
    Validation,
    /// A status change the state machine forbids: 23514 → HTTP 409.
    IllegalTransition,
    /// The referenced object does not exist for this merchant → HTTP 404.
    NotFound,
    /// Conflicts with existing state (duplicate key, replayed idempotency key) → HTTP 409.
    Conflict,
    /// Authenticated but not allowed (no merchant in context, missing scope) → 42501, HTTP 403.
    NotAuthorized,
    /// No credentials, or a bad or revoked API key → 28000, HTTP 401.
    Unauthenticated,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainError {
    pub kind: ErrorKind,
    pub message: String,
    pub fields: Vec<FieldError>,
    pub hint: Option<String>,
}

impl DomainError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        DomainError {
            kind,
            message: message.into(),
            fields: Vec::new(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The JSON detail PostgREST passes through: `{"errors":[{"field":…,"message":…}]}`.
    pub fn detail_json(&self) -> Option<String> {
        if self.fields.is_empty() {
            return None;
        }
        Some(serde_json::json!({ "errors": self.fields }).to_string())
    }
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DomainError {}

/// Collects every bad field of one input before failing, so a caller fixes them all at once.
#[derive(Debug, Default)]
pub struct FieldErrors {
    errors: Vec<FieldError>,
}

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok(())` when nothing was added, else one validation error naming every field.
    pub fn finish(self, what: &str) -> Result<(), DomainError> {
        if self.errors.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = self.errors.iter().map(|e| e.field.as_str()).collect();
        let message = if self.errors.len() == 1 {
            format!(
                "invalid {what}: {} {}",
                self.errors[0].field, self.errors[0].message
            )
        } else {
            format!(
                "invalid {what}: {} fields are invalid ({})",
                self.errors.len(),
                names.join(", ")
            )
        };
        Err(DomainError {
            kind: ErrorKind::Validation,
            message,
            fields: self.errors,
            hint: Some("fix the fields listed in the detail and send the request again".into()),
        })
    }
}
