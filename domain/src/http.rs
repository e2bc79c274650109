//! The HTTP door's rules: which scope a request needs, and which status an error gets.
//!
//! PostgREST maps most SQLSTATEs to a status by itself, but not 401 vs 403 for keys it does not
//! know about, 404 for a missing invoice, or 429: errors raised during an HTTP request are
//! re-raised as PostgREST's `PGRST` error with the status chosen here.

/// What a request needs before it may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Open to anyone (the OpenAPI description, the public invoice view).
    Anonymous,
    /// A valid key holding this scope (or `admin`).
    Scope(&'static str),
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Anonymous => "anonymous",
            Access::Scope(s) => s,
        }
    }
}

/// The access a request needs, from its method and path (`/invoices`, `/rpc/create_invoice`).
pub fn required_access(method: &str, path: &str) -> Access {
    let path = path.trim_end_matches('/');
    let name = path.rsplit('/').next().unwrap_or("");
    let is_rpc = path.starts_with("/rpc/");
    let read_only = matches!(method, "GET" | "HEAD" | "OPTIONS");
    match name {
        "" | "public_invoices" | "verify_webhook_signature" | "invoice_pdf" | "pay_payment_link" => {
            Access::Anonymous
        }
        "create_api_key" | "revoke_api_key" | "api_keys" => Access::Scope("admin"),
        "create_webhook_endpoint" | "delete_webhook_endpoint" | "redeliver"
        | "webhook_endpoints" | "webhook_deliveries" => Access::Scope("webhooks"),
        "invoice_status" => Access::Scope("read"),
        _ if is_rpc && !read_only => Access::Scope("write"),
        _ if read_only => Access::Scope("read"),
        _ => Access::Scope("write"),
    }
}

/// HTTP status for a SQLSTATE raised by the extension.
pub fn status_for_sqlstate(code: &str) -> u16 {
    match code {
        "28000" => 401,
        "42501" => 403,
        "P0002" => 404,
        "23505" | "23514" | "55000" => 409,
        "54000" => 429,
        _ if code.starts_with("22") || code.starts_with("23") => 400,
        _ => 400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_need_read_and_rpc_posts_need_write() {
        assert_eq!(required_access("GET", "/invoices"), Access::Scope("read"));
        assert_eq!(required_access("HEAD", "/audit_log"), Access::Scope("read"));
        assert_eq!(required_access("POST", "/rpc/create_invoice"), Access::Scope("write"));
        assert_eq!(required_access("POST", "/rpc/cancel_invoice"), Access::Scope("write"));
        assert_eq!(required_access("POST", "/rpc/invoice_status"), Access::Scope("read"));
        assert_eq!(required_access("GET", "/rpc/invoice_status"), Access::Scope("read"));
        assert_eq!(required_access("PATCH", "/invoices"), Access::Scope("write"));
    }

    #[test]
    fn keys_and_webhooks_have_their_own_scopes() {
        assert_eq!(required_access("POST", "/rpc/create_api_key"), Access::Scope("admin"));
        assert_eq!(required_access("GET", "/api_keys"), Access::Scope("admin"));
        assert_eq!(required_access("POST", "/rpc/create_webhook_endpoint"), Access::Scope("webhooks"));
        assert_eq!(required_access("GET", "/webhook_deliveries"), Access::Scope("webhooks"));
    }

    #[test]
    fn public_things_are_anonymous() {
        assert_eq!(required_access("GET", "/"), Access::Anonymous);
        assert_eq!(required_access("GET", "/public_invoices"), Access::Anonymous);
        assert_eq!(required_access("POST", "/rpc/verify_webhook_signature"), Access::Anonymous);
    }

    #[test]
    fn statuses() {
        assert_eq!(status_for_sqlstate("22023"), 400);
        assert_eq!(status_for_sqlstate("22P02"), 400);
        assert_eq!(status_for_sqlstate("23514"), 409);
        assert_eq!(status_for_sqlstate("28000"), 401);
        assert_eq!(status_for_sqlstate("42501"), 403);
        assert_eq!(status_for_sqlstate("P0002"), 404);
        assert_eq!(status_for_sqlstate("23505"), 409);
        assert_eq!(status_for_sqlstate("54000"), 429);
    }
}
