//! The gateway (the incoming door: web front, PostgREST, the pre-request check): which object a request addresses, and which status an error gets.
//!
//! PostgREST maps most SQLSTATEs to a status by itself, but not 401 vs 403 for keys it does not
//! know about, 404 for a missing invoice, or 429: errors raised during an HTTP request are
//! re-raised as PostgREST's `PGRST` error with the status chosen here.

/// What a request addresses, read the way PostgREST routes it: each path segment
/// percent-decoded (`/rpc/create%5Fapi%5Fkey` is `create_api_key`). The scope each object needs
/// lives in one table in SQL (`invoices_internal.access_rules`); this only names the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the OpenAPI description.
    Root,
    /// `/rpc/<name>`: a function, whatever the method (PostgREST allows GET on functions).
    Function(String),
    /// `GET|HEAD|OPTIONS /<name>`: a view.
    View(String),
    /// Any other method on a view: the views are read-only.
    ViewWrite(String),
    /// A path that decodes to no object name (bad escapes, NUL, a `/` inside a segment, extra
    /// segments): it needs the highest scope, so no spelling of it can be worth more.
    Unreadable,
}

impl Route {
    /// `(kind, object)` for SQL: kind is `root`, `function`, `view`, `view_write` or `unreadable`.
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            Route::Root => ("root", ""),
            Route::Function(n) => ("function", n),
            Route::View(n) => ("view", n),
            Route::ViewWrite(n) => ("view_write", n),
            Route::Unreadable => ("unreadable", ""),
        }
    }
}

/// One decoded path segment, lower-cased (rules are looked up case-insensitively, which can only
/// ask for more), or None when it does not decode to a plain name.
fn segment(raw: &str) -> Option<String> {
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    let text = String::from_utf8(bytes).ok()?;
    let wellformed = raw.split('%').skip(1).all(|r| r.len() >= 2 && r.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit));
    if !wellformed || text.is_empty() || text.chars().any(|c| c.is_control() || c == '/' || c == '\\') {
        return None;
    }
    Some(text.to_lowercase())
}

/// The object a request addresses, from its method and raw path (`/invoices`, `/rpc/x`).
pub fn route(method: &str, path: &str) -> Route {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let raw: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(decoded) = raw.iter().map(|s| segment(s)).collect::<Option<Vec<String>>>() else {
        return Route::Unreadable;
    };
    let read_only = matches!(method.to_ascii_uppercase().as_str(), "GET" | "HEAD" | "OPTIONS");
    match decoded.as_slice() {
        [] => Route::Root,
        [rpc, name] if rpc == "rpc" => Route::Function(name.clone()),
        [name] if read_only => Route::View(name.clone()),
        [name] => Route::ViewWrite(name.clone()),
        _ => Route::Unreadable,
    }
}

/// The scope 0.1.0's hard-coded rule gave a route (installs of 0.1.0 running this library):
/// the same names as `invoices_internal.access_rules`, which replaces it.
pub fn legacy_scope(route: &Route) -> &'static str {
    match route {
        Route::Root => "anonymous",
        Route::ViewWrite(_) => "method_not_allowed",
        Route::Unreadable => "admin",
        Route::Function(f) => match f.as_str() {
            "verify_webhook_signature" | "pay_payment_link" | "hosted_invoice" | "invoice_viewed" => "anonymous",
            "invoice_pdf" | "invoice_status" => "public_read",
            "create_api_key" | "revoke_api_key" | "create_wallet" | "set_payment_tolerance" => "admin",
            "create_webhook_endpoint" | "delete_webhook_endpoint" | "redeliver" => "webhooks",
            _ => "write",
        },
        Route::View(v) => match v.as_str() {
            "public_invoices" | "public_payment_links" => "anonymous",
            "api_keys" => "admin",
            "webhook_endpoints" | "webhook_deliveries" => "webhooks",
            _ => "read",
        },
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

    fn f(n: &str) -> Route {
        Route::Function(n.into())
    }

    #[test]
    fn functions_and_views_are_named_by_their_path() {
        assert_eq!(route("GET", "/invoices"), Route::View("invoices".into()));
        assert_eq!(route("HEAD", "/audit_log"), Route::View("audit_log".into()));
        assert_eq!(route("POST", "/rpc/create_invoice"), f("create_invoice"));
        assert_eq!(route("GET", "/rpc/cancel_invoice"), f("cancel_invoice"));
        assert_eq!(route("GET", "/"), Route::Root);
        assert_eq!(route("GET", ""), Route::Root);
        assert_eq!(route("GET", "/invoices/"), Route::View("invoices".into()));
        assert_eq!(route("GET", "/invoices?select=id"), Route::View("invoices".into()));
    }

    #[test]
    fn views_are_read_only() {
        for m in ["PATCH", "DELETE", "POST", "PUT"] {
            assert_eq!(route(m, "/invoices"), Route::ViewWrite("invoices".into()), "{m}");
        }
    }

    #[test]
    fn the_object_does_not_depend_on_how_the_path_is_spelled() {
        for p in ["/rpc/create%5Fapi%5Fkey", "/rpc/create%5fapi%5fkey", "/rpc/%63reate_api_key",
                  "/rpc/CREATE_API_KEY", "/%72pc/create_api_key", "//rpc//create_api_key"] {
            assert_eq!(route("POST", p), f("create_api_key"), "{p}");
        }
        assert_eq!(route("GET", "/api%5Fkeys"), Route::View("api_keys".into()));
        assert_eq!(route("GET", "/webhook%5Fdeliveries"), Route::View("webhook_deliveries".into()));
    }

    #[test]
    fn paths_that_decode_to_no_name_are_unreadable() {
        for p in ["/rpc/create_api%00key", "/rpc/create_api_key%", "/rpc/create%5", "/rpc%2Fcreate_api_key",
                  "/rpc/a%2Fb", "/rpc/%ff%fe", "/a/b/c", "/rpc/x%0a"] {
            assert_eq!(route("POST", p), Route::Unreadable, "{p}");
        }
    }

    #[test]
    fn the_legacy_rule_reads_decoded_paths_too() {
        assert_eq!(legacy_scope(&route("POST", "/rpc/create%5Fapi%5Fkey")), "admin");
        assert_eq!(legacy_scope(&route("GET", "/webhook%5fdeliveries")), "webhooks");
        assert_eq!(legacy_scope(&route("GET", "/public_invoices")), "anonymous");
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
