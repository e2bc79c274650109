//! The four seed APIs, as their documents print them: Living Invoices (`/api/v1`, Kaspa),
//! Kibble (`/api`, USDC on Base), BTPay (`/api/v1`, Bitcoin) and apiforcrypto
//! (`/api/v1/wallets`). Only the host changes: the web front hands every `/api/` request to
//! one SQL entry point (`invoices.seed_request`), which finds the handler in [`ROUTES`], the
//! one routing table, and answers in the seed's shape. The handlers are thin SQL over the
//! engine's functions; turning a seed's payload into the engine's and the engine's answer
//! into the seed's is here, where cargo tests cover it. There is no second invoice model.

pub mod btpay;
pub mod afc;
pub mod kibble;
pub mod v1;
pub mod webhooks;

use crate::error::{DomainError, ErrorKind};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// One documented call: method and path pattern (`{name}` matches one path segment), the SQL
/// handler (`invoices_internal.seed_<handler>`), the scope it needs and whose document it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub pattern: &'static str,
    pub handler: &'static str,
    pub scope: &'static str,
    pub seed: Seed,
}

/// Whose document a route follows; decides the error statuses it may answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seed {
    /// `POST` and `GET /api/v1/invoices`: Living Invoices and BTPay share them.
    LivingInvoicesAndBtpay,
    Btpay,
    Kibble,
    Apiforcrypto,
}

impl Seed {
    pub fn as_str(self) -> &'static str {
        match self {
            Seed::LivingInvoicesAndBtpay => "living_invoices+btpay",
            Seed::Btpay => "btpay",
            Seed::Kibble => "kibble",
            Seed::Apiforcrypto => "apiforcrypto",
        }
    }

    /// The status a failure answers with: the engine's, where the seed documents it; else the
    /// seed's catch-all for bad requests (400).
    pub fn error_status(self, engine_status: u16) -> u16 {
        let documented: &[u16] = match self {
            // BTPay: 400, 401, 403, 404, 429; Living Invoices documents 429 only
            Seed::LivingInvoicesAndBtpay | Seed::Btpay => &[400, 401, 403, 404, 429],
            // Kibble documents 400 (and 500); auth and limits are as every route's
            Seed::Kibble => &[400, 401, 403, 404, 429],
            // apiforcrypto: 403 (currency not active), 404 (wallet or invoice not found)
            Seed::Apiforcrypto => &[400, 401, 403, 404, 429],
        };
        if documented.contains(&engine_status) || engine_status >= 500 {
            engine_status
        } else {
            400
        }
    }
}

use Seed::*;

/// The routing table: every documented call of the four seeds.
pub const ROUTES: &[Route] = &[
    // Living Invoices and BTPay (the union of their fields; a superset of both answers)
    Route { method: "POST", pattern: "/api/v1/invoices", handler: "v1_create_invoice", scope: "write", seed: LivingInvoicesAndBtpay },
    Route { method: "GET", pattern: "/api/v1/invoices", handler: "v1_list_invoices", scope: "read", seed: LivingInvoicesAndBtpay },
    // BTPay
    Route { method: "GET", pattern: "/api/v1/invoices/{ref}", handler: "btpay_get_invoice", scope: "read", seed: Btpay },
    Route { method: "POST", pattern: "/api/v1/invoices/{ref}/finalize", handler: "btpay_finalize_invoice", scope: "write", seed: Btpay },
    Route { method: "GET", pattern: "/api/v1/invoices/{ref}/status", handler: "btpay_invoice_status", scope: "read", seed: Btpay },
    Route { method: "DELETE", pattern: "/api/v1/invoices/{ref}", handler: "btpay_cancel_invoice", scope: "write", seed: Btpay },
    Route { method: "GET", pattern: "/api/v1/payment-links", handler: "btpay_list_payment_links", scope: "read", seed: Btpay },
    Route { method: "POST", pattern: "/api/v1/payment-links", handler: "btpay_create_payment_link", scope: "write", seed: Btpay },
    Route { method: "DELETE", pattern: "/api/v1/payment-links/{slug}", handler: "btpay_deactivate_payment_link", scope: "write", seed: Btpay },
    Route { method: "GET", pattern: "/api/v1/rates", handler: "btpay_rates", scope: "read", seed: Btpay },
    Route { method: "GET", pattern: "/api/v1/webhooks", handler: "btpay_list_webhooks", scope: "webhooks", seed: Btpay },
    Route { method: "POST", pattern: "/api/v1/webhooks", handler: "btpay_create_webhook", scope: "webhooks", seed: Btpay },
    Route { method: "DELETE", pattern: "/api/v1/webhooks/{id}", handler: "btpay_delete_webhook", scope: "webhooks", seed: Btpay },
    // Kibble
    Route { method: "POST", pattern: "/api/invoices", handler: "kibble_create_invoice", scope: "write", seed: Kibble },
    Route { method: "POST", pattern: "/api/invoices/{id}/send", handler: "kibble_send_invoice", scope: "write", seed: Kibble },
    // the PDF: the web front asks invoices.seed_pdf for it (application/pdf), by this same route
    Route { method: "GET", pattern: "/api/invoices/{id}/pdf", handler: "kibble_invoice_pdf", scope: "public_read", seed: Kibble },
    // apiforcrypto
    Route { method: "POST", pattern: "/api/v1/wallets/{wallet}/invoices", handler: "afc_create_invoice", scope: "write", seed: Apiforcrypto },
    Route { method: "GET", pattern: "/api/v1/wallets/invoices/{uuid}", handler: "afc_get_invoice", scope: "anonymous", seed: Apiforcrypto },
];

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// A route, and the path's `{name}` segments, percent-decoded.
    Found { route: &'static Route, params: BTreeMap<String, String> },
    /// The path is documented, not with this method: 405, with the methods it has.
    MethodNotAllowed { allowed: Vec<&'static str> },
    NotFound,
}

/// The segments of a path, percent-decoded (as the seeds' servers read them). A segment that
/// decodes to nothing, or to something with a `/` or a control character, matches no route.
fn segments(path: &str) -> Option<Vec<String>> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let trimmed = path.trim_end_matches('/');
    let mut out = Vec::new();
    for raw in trimmed.split('/').skip(1) {
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8().ok()?;
        if decoded.is_empty() || decoded.contains('/') || decoded.chars().any(char::is_control) {
            return None;
        }
        out.push(decoded.into_owned());
    }
    Some(out)
}

fn matches(pattern: &str, segs: &[String]) -> Option<BTreeMap<String, String>> {
    let parts: Vec<&str> = pattern.split('/').skip(1).collect();
    if parts.len() != segs.len() {
        return None;
    }
    let mut params = BTreeMap::new();
    for (p, s) in parts.iter().zip(segs) {
        if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            params.insert(name.to_string(), s.clone());
        } else if p != s {
            return None;
        }
    }
    Some(params)
}

/// Finds the route of `method path` (a HEAD is a GET).
pub fn route(method: &str, path: &str) -> Routed {
    let method = method.to_ascii_uppercase();
    let method = if method == "HEAD" { "GET".to_string() } else { method };
    let Some(segs) = segments(path) else { return Routed::NotFound };
    let mut allowed = Vec::new();
    for r in ROUTES {
        if let Some(params) = matches(r.pattern, &segs) {
            if r.method == method {
                return Routed::Found { route: r, params };
            }
            allowed.push(r.method);
        }
    }
    if allowed.is_empty() {
        Routed::NotFound
    } else {
        Routed::MethodNotAllowed { allowed }
    }
}

/// The query string as an object of its parameters (percent- and `+`-decoded; of a repeated
/// parameter, the last).
pub fn query(qs: &str) -> Map<String, Value> {
    url::form_urlencoded::parse(qs.trim_start_matches('?').as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

/// The routing decision as the SQL entry point reads it: `{"handler", "scope", "seed",
/// "params"}`, or `{"status": 404|405, "error", "allow"}`.
pub fn route_json(method: &str, path: &str) -> Value {
    match route(method, path) {
        Routed::Found { route, params } => json!({
            "handler": route.handler,
            "scope": route.scope,
            "seed": route.seed.as_str(),
            "params": params,
        }),
        Routed::MethodNotAllowed { allowed } => json!({
            "status": 405,
            "error": format!("{} is not allowed on {}", method.to_ascii_uppercase(), path.split('?').next().unwrap_or("")),
            "allow": allowed.join(", "),
        }),
        Routed::NotFound => json!({
            "status": 404,
            "error": format!("not found: {}", path.split('?').next().unwrap_or("")),
        }),
    }
}

/// A failure in the seeds' shape: `{"error": "<message>"}`, plus `code` and the bad fields
/// (`errors: [{field, message}]`) where there are any (Kibble's field-level 400).
pub fn error_body(message: &str, code: Option<&str>, fields: Option<&Value>) -> Value {
    let mut body = Map::new();
    body.insert("error".into(), Value::String(message.to_string()));
    if let Some(code) = code {
        body.insert("code".into(), Value::String(code.to_string()));
    }
    if let Some(errors) = fields.and_then(|f| f.get("errors")).filter(|e| e.is_array()) {
        body.insert("errors".into(), errors.clone());
    }
    Value::Object(body)
}

/// A validation error naming one field.
pub(crate) fn invalid(field: &str, message: &str) -> DomainError {
    let mut errs = crate::error::FieldErrors::new();
    errs.add(field, message);
    errs.finish("request").unwrap_err()
}

/// Refuses fields a call does not document (a typo would otherwise be silently ignored).
pub(crate) fn only_fields(
    body: &Map<String, Value>,
    known: &[&str],
    errs: &mut crate::error::FieldErrors,
) {
    for k in body.keys() {
        if !known.contains(&k.as_str()) {
            errs.add(k.clone(), "is not a field of this call");
        }
    }
}

/// The body as an object, or a 400 naming it.
pub(crate) fn object(body: &Value) -> Result<&Map<String, Value>, DomainError> {
    body.as_object().ok_or_else(|| {
        DomainError::new(ErrorKind::Validation, "the request body must be a JSON object")
            .with_hint("send Content-Type: application/json and a JSON object")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(method: &str, path: &str) -> (&'static str, BTreeMap<String, String>) {
        match route(method, path) {
            Routed::Found { route, params } => (route.handler, params),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn every_pattern_is_well_formed_and_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            assert!(a.pattern.starts_with("/api/"), "{}", a.pattern);
            assert!(["GET", "POST", "DELETE"].contains(&a.method));
            assert!(["read", "write", "webhooks", "public_read", "anonymous"].contains(&a.scope));
            for b in &ROUTES[i + 1..] {
                assert!(!(a.method == b.method && a.pattern == b.pattern), "{} {}", a.method, a.pattern);
            }
        }
    }

    #[test]
    fn routes_with_parameters() {
        assert_eq!(found("POST", "/api/v1/invoices").0, "v1_create_invoice");
        assert_eq!(found("get", "/api/v1/invoices/").0, "v1_list_invoices");
        let (h, p) = found("POST", "/api/v1/invoices/INV-0001/finalize");
        assert_eq!((h, p["ref"].as_str()), ("btpay_finalize_invoice", "INV-0001"));
        let (h, p) = found("DELETE", "/api/v1/invoices/INV%2D0002");
        assert_eq!((h, p["ref"].as_str()), ("btpay_cancel_invoice", "INV-0002"));
        assert_eq!(found("HEAD", "/api/v1/invoices/x/status").0, "btpay_invoice_status");
    }

    #[test]
    fn the_other_seeds() {
        assert_eq!(found("POST", "/api/invoices").0, "kibble_create_invoice");
        let (h, p) = found("GET", "/api/invoices/a1b2/pdf");
        assert_eq!((h, p["id"].as_str()), ("kibble_invoice_pdf", "a1b2"));
        let (h, p) = found("POST", "/api/v1/wallets/w-1/invoices");
        assert_eq!((h, p["wallet"].as_str()), ("afc_create_invoice", "w-1"));
        // "invoices" is a wallet id no wallet has, below /wallets/: the public read wins by method
        assert_eq!(found("GET", "/api/v1/wallets/invoices/f4ae3bd1-a031-4b4c-84cb-96a425aab4c8").0, "afc_get_invoice");
    }

    #[test]
    fn unknown_paths_and_methods() {
        assert_eq!(route("GET", "/api/v1/nothing"), Routed::NotFound);
        assert_eq!(route("GET", "/api/v1/invoices/a/b/c"), Routed::NotFound);
        assert_eq!(route("PUT", "/api/v1/invoices"), Routed::MethodNotAllowed { allowed: vec!["POST", "GET"] });
        // an encoded slash or a control character is not a segment
        assert_eq!(route("GET", "/api/v1/invoices/a%2Fb/status"), Routed::NotFound);
        assert_eq!(route("GET", "/api/v1/invoices/a%00/status"), Routed::NotFound);
        assert_eq!(route("GET", "/api/v1/invoices/%ff"), Routed::NotFound);
        // an encoded literal is the literal, as the seeds' servers decode it
        assert_eq!(found("GET", "/api/v1/%69nvoices").0, "v1_list_invoices");
    }

    #[test]
    fn query_strings() {
        let q = query("status=pending&limit=10&page=2&x=a+b%26c");
        assert_eq!(q["status"], "pending");
        assert_eq!(q["x"], "a b&c");
        assert!(query("").is_empty());
    }

    #[test]
    fn error_statuses_follow_the_seed() {
        assert_eq!(Btpay.error_status(409), 400);
        assert_eq!(Btpay.error_status(404), 404);
        assert_eq!(Apiforcrypto.error_status(403), 403);
        assert_eq!(Kibble.error_status(429), 429);
    }

    #[test]
    fn error_bodies() {
        let detail = json!({"errors": [{"field": "to_email", "message": "is required"}]});
        assert_eq!(
            error_body("invalid request: to_email is required", Some("22023"), Some(&detail)),
            json!({"error": "invalid request: to_email is required", "code": "22023",
                   "errors": [{"field": "to_email", "message": "is required"}]})
        );
        assert_eq!(error_body("nope", None, None), json!({"error": "nope"}));
    }
}
