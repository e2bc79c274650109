//! The seed APIs (`domain::seeds`), for `sql/88_seeds.sql`: the routing table and the shaping
//! of each seed's payloads. Bad input raises with its fields; the SQL entry point answers it in
//! the seed's shape.

use crate::domain::seeds::{self, afc, btpay, kibble, v1, webhooks};
use crate::error::OrRaise;
use pgrx::prelude::*;
use pgrx::JsonB;

fn seed_of(name: &str) -> seeds::Seed {
    match name {
        "btpay" => seeds::Seed::Btpay,
        "kibble" => seeds::Seed::Kibble,
        "apiforcrypto" => seeds::Seed::Apiforcrypto,
        _ => seeds::Seed::LivingInvoicesAndBtpay,
    }
}

#[pg_schema]
pub mod invoices_internal {
    use super::*;

    /// Where `method path` goes: `{handler, scope, seed, params}`, or `{status, error, allow}`.
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_route(method: &str, path: &str) -> JsonB {
        JsonB(seeds::route_json(method, path))
    }

    /// A query string as an object of its parameters.
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_query(query: &str) -> JsonB {
        JsonB(serde_json::Value::Object(seeds::query(query)))
    }

    /// The status a failure of a seed's route answers with.
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_error_status(seed: &str, engine_status: i32) -> i32 {
        seed_of(seed).error_status(engine_status.clamp(100, 599) as u16) as i32
    }

    /// A failure in the seeds' shape: `{"error", "code", "errors"}` (the bad fields, from the
    /// error's JSON detail when it has one).
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_error_body(message: &str, code: Option<&str>, detail: Option<&str>) -> JsonB {
        let fields = detail.and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok());
        JsonB(seeds::error_body(message, code, fields.as_ref()))
    }

    /// `POST /api/v1/invoices`: create_invoice's arguments (Living Invoices or BTPay rules).
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_v1_create_args(body: Option<JsonB>, default_due_date: &str) -> JsonB {
        let body = body.map(|b| b.0).unwrap_or(serde_json::Value::Null);
        JsonB(v1::create_args(&body, default_due_date).or_raise())
    }

    /// `GET /api/v1/invoices`: `{status, limit, offset, page}` from the query.
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_v1_list_params(query: JsonB) -> JsonB {
        let q = query.0.as_object().cloned().unwrap_or_default();
        JsonB(v1::list_params(&q).or_raise())
    }

    /// `GET /api/v1/invoices/<ref>`: whether `include_payments` asks for the payments.
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_v1_include_payments(query: JsonB) -> bool {
        let q = query.0.as_object().cloned().unwrap_or_default();
        v1::include_payments(&q).or_raise()
    }

    /// An invoice object (a row of invoices.invoices, with created_unix) in the shape of both
    /// Living Invoices and BTPay.
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_v1_invoice(invoice: JsonB) -> JsonB {
        JsonB(v1::invoice(&invoice.0))
    }

    /// BTPay's light status answer.
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_v1_status(invoice: JsonB) -> JsonB {
        JsonB(v1::status(&invoice.0))
    }

    /// A webhook delivery's body in an endpoint's format (`invoices`, `living_invoices`,
    /// `btpay`), from the project's own envelope with `latest_txid` and `asset_amount` beside it.
    #[pg_extern(immutable, parallel_safe)]
    pub fn webhook_body(format: &str, envelope: JsonB) -> JsonB {
        JsonB(webhooks::body(format, &envelope.0))
    }

    /// `POST /api/v1/payment-links`: create_payment_link's arguments.
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_btpay_payment_link_args(body: Option<JsonB>) -> JsonB {
        let body = body.map(|b| b.0).unwrap_or(serde_json::Value::Null);
        JsonB(btpay::payment_link_args(&body).or_raise())
    }

    /// A payment link (a row of invoices.payment_links, with created_unix) in BTPay's shape.
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_btpay_payment_link(link: JsonB, base_url: &str) -> JsonB {
        JsonB(btpay::payment_link(&link.0, base_url))
    }

    /// `POST /api/v1/webhooks`: `{url, events, description}`.
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_btpay_webhook_args(body: Option<JsonB>) -> JsonB {
        let body = body.map(|b| b.0).unwrap_or(serde_json::Value::Null);
        JsonB(btpay::webhook_args(&body).or_raise())
    }

    /// A webhook endpoint in BTPay's shape (the secret only at creation).
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_btpay_webhook(endpoint: JsonB, secret: Option<&str>) -> JsonB {
        JsonB(btpay::webhook(&endpoint.0, secret))
    }

    /// `DELETE /api/v1/webhooks/<id>`: the id, checked.
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_btpay_webhook_id(id: &str) -> pgrx::Uuid {
        let id = btpay::webhook_id(id).or_raise();
        let u = uuid::Uuid::parse_str(&id).unwrap_or_else(|e| error!("{e}"));
        pgrx::Uuid::from_bytes(*u.as_bytes())
    }

    /// `POST /api/invoices` (Kibble): `{invoice, merchant, send_now, wallet}`.
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_kibble_create_args(body: Option<JsonB>, today: &str) -> JsonB {
        let body = body.map(|b| b.0).unwrap_or(serde_json::Value::Null);
        JsonB(kibble::create_args(&body, today).or_raise())
    }

    /// Kibble's 201 answer (the webhook secret only when one was made).
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_kibble_created(invoice: JsonB, base_url: &str, webhook_secret: Option<&str>) -> JsonB {
        JsonB(kibble::created(&invoice.0, base_url, webhook_secret))
    }

    /// `POST /api/v1/wallets/{wallet id}/invoices` (apiforcrypto): `{invoice, blockchain}`.
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_afc_create_args(body: Option<JsonB>) -> JsonB {
        let body = body.map(|b| b.0).unwrap_or(serde_json::Value::Null);
        JsonB(afc::create_args(&body).or_raise())
    }

    /// An invoice in apiforcrypto's shape; `public` leaves out the wallet and the callback URL.
    #[pg_extern(immutable, parallel_safe)]
    pub fn seed_afc_invoice(invoice: JsonB, chain: JsonB, payments: JsonB, public: bool) -> JsonB {
        JsonB(afc::invoice(&invoice.0, &chain.0, &payments.0, public))
    }
}
