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
    /// Without a key anyone (the function then shows public data only); with a key, `read`.
    PublicOrRead,
    /// Never allowed: the views are read-only, data changes only through `/rpc/` functions.
    MethodNotAllowed,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Anonymous => "anonymous",
            Access::Scope(s) => s,
            Access::PublicOrRead => "public_read",
            Access::MethodNotAllowed => "method_not_allowed",
        }
    }
}

/// The access a request needs, from its method and path (`/invoices`, `/rpc/create_invoice`).
/// A function needs the same scope whichever method calls it (PostgREST allows GET on
/// functions), so a read-only key cannot reach a writing function through GET.
pub fn required_access(method: &str, path: &str) -> Access {
    let path = path.trim_end_matches('/');
    let read_only = matches!(method, "GET" | "HEAD" | "OPTIONS");
    if let Some(function) = path.strip_prefix("/rpc/") {
        return match function {
            "verify_webhook_signature" | "pay_payment_link" | "hosted_invoice" | "invoice_viewed" => Access::Anonymous,
            // the hosted page and its payer: a finalized invoice by slug; a key sees its own
            "invoice_pdf" | "invoice_status" => Access::PublicOrRead,
            // keys and payout wallets change who controls the merchant's money
            "create_api_key" | "revoke_api_key" | "create_wallet" | "set_payment_tolerance" => Access::Scope("admin"),
            "create_webhook_endpoint" | "delete_webhook_endpoint" | "redeliver" => Access::Scope("webhooks"),
            _ => Access::Scope("write"),
        };
    }
    if !read_only {
        return Access::MethodNotAllowed;
    }
    match path.trim_start_matches('/') {
        "" | "public_invoices" | "public_payment_links" => Access::Anonymous,
        "api_keys" => Access::Scope("admin"),
        "webhook_endpoints" | "webhook_deliveries" => Access::Scope("webhooks"),
        _ => Access::Scope("read"),
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
        "0A000" => 405,
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
        assert_eq!(required_access("POST", "/rpc/invoice_status"), Access::PublicOrRead);
        assert_eq!(required_access("GET", "/rpc/invoice_status"), Access::PublicOrRead);
    }

    #[test]
    fn a_writing_function_needs_write_through_get_too() {
        assert_eq!(required_access("GET", "/rpc/cancel_invoice"), Access::Scope("write"));
        assert_eq!(required_access("GET", "/rpc/finalize_invoice"), Access::Scope("write"));
    }

    #[test]
    fn views_are_read_only() {
        assert_eq!(required_access("PATCH", "/invoices"), Access::MethodNotAllowed);
        assert_eq!(required_access("DELETE", "/invoices"), Access::MethodNotAllowed);
        assert_eq!(required_access("POST", "/invoices"), Access::MethodNotAllowed);
        assert_eq!(required_access("PUT", "/api_keys"), Access::MethodNotAllowed);
    }

    #[test]
    fn keys_and_webhooks_have_their_own_scopes() {
        assert_eq!(required_access("POST", "/rpc/create_api_key"), Access::Scope("admin"));
        assert_eq!(required_access("GET", "/api_keys"), Access::Scope("admin"));
        assert_eq!(required_access("POST", "/rpc/create_wallet"), Access::Scope("admin"));
        assert_eq!(required_access("GET", "/wallets"), Access::Scope("read"));
        assert_eq!(required_access("POST", "/rpc/create_webhook_endpoint"), Access::Scope("webhooks"));
        assert_eq!(required_access("GET", "/webhook_deliveries"), Access::Scope("webhooks"));
    }

    #[test]
    fn public_things_are_anonymous() {
        assert_eq!(required_access("GET", "/"), Access::Anonymous);
        assert_eq!(required_access("GET", "/public_invoices"), Access::Anonymous);
        assert_eq!(required_access("POST", "/rpc/verify_webhook_signature"), Access::Anonymous);
        assert_eq!(required_access("POST", "/rpc/invoice_viewed"), Access::Anonymous);
        assert_eq!(required_access("GET", "/rpc/hosted_invoice"), Access::Anonymous);
        assert_eq!(required_access("GET", "/rpc/invoice_status").as_str(), "public_read");
        assert_eq!(required_access("GET", "/rpc/invoice_pdf").as_str(), "public_read");
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
        assert_eq!(status_for_sqlstate("0A000"), 405);
    }
}
