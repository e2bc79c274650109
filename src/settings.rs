//! The extension's settings (GUCs). Every one is documented in the README's settings table.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// `invoices.public_base_url`: where hosted invoice pages live (`<url>/i/<slug>`).
pub static PUBLIC_BASE_URL: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"http://127.0.0.1:3000"));

/// `invoices.checkout_frame_ancestors`: which pages may show the hosted checkout in a frame (the
/// pay button's modal): a CSP `frame-ancestors` source list.
pub static CHECKOUT_FRAME_ANCESTORS: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"*"));

/// `invoices.background_worker`: whether this server runs the background worker. Off on the
/// worker nodes of a Citus cluster: only the coordinator sweeps, polls and delivers.
pub static BACKGROUND_WORKER: GucSetting<bool> = GucSetting::<bool>::new(true);

/// `invoices.database`: the database the background worker connects to.
pub static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"invoices"));

/// `invoices.merchant_id`: the merchant this session or transaction acts for. Set by
/// `invoices.act_as()` (SQL door) or by the API-key check of a PostgREST request.
pub static MERCHANT_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `invoices.api_key_id`: the API key of the current HTTP request (set by the pre-request
/// check; the audit log's actor).
pub static API_KEY_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `invoices.rate_limit_per_minute`: requests per minute per API key (a key's own
/// `rate_limit_per_minute` overrides it).
pub static RATE_LIMIT_PER_MINUTE: GucSetting<i32> = GucSetting::<i32>::new(100);

/// `invoices.page_poll_ms`: how often the hosted invoice page polls the status.
pub static PAGE_POLL_MS: GucSetting<i32> = GucSetting::<i32>::new(3000);

/// `invoices.smtp_url`: the relay invoice e-mails go through (`smtp://[user:password@]host:port`
/// with STARTTLS when offered, `?tls=required|none`, or `smtps://…` for implicit TLS).
pub static SMTP_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `invoices.smtp_allow_cleartext_auth`: let the relay's user and password cross the network
/// without TLS (a local relay only). Off: credentials need STARTTLS or smtps.
pub static SMTP_ALLOW_CLEARTEXT_AUTH: GucSetting<bool> = GucSetting::<bool>::new(false);

/// `invoices.smtp_ca_file`: a PEM file of CA certificates trusted for the relay, besides the
/// Mozilla roots (a private relay CA).
pub static SMTP_CA_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `invoices.smtp_from`: the sender address of invoice e-mails.
pub static SMTP_FROM: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"invoices@localhost"));

/// `invoices.idempotency_key`: the `Idempotency-Key` of the current request (the pre-request
/// check copies the header; SQL callers may `SET LOCAL` it themselves).
pub static IDEMPOTENCY_KEY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `invoices.worker_naptime_ms`: how long the background worker sleeps between ticks.
pub static WORKER_NAPTIME_MS: GucSetting<i32> = GucSetting::<i32>::new(200);

/// `invoices.rate_max_age_seconds`: older rates are stale and ignored by quotes.
pub static RATE_MAX_AGE_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(600);

/// `invoices.actor`: who the audit log names for changes without an API key (the worker sets
/// `worker`).
pub static ACTOR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `invoices.webhook_concurrency`: deliveries sent at once by the worker.
pub static WEBHOOK_CONCURRENCY: GucSetting<i32> = GucSetting::<i32>::new(16);

/// `invoices.webhook_timeout_ms`: a delivery not answered within this long failed.
pub static WEBHOOK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5000);

/// `invoices.webhook_retry_schedule`: delays between attempts, then dead letter.
pub static WEBHOOK_RETRY_SCHEDULE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"1min,5min,15min,1h,2h"));

/// `invoices.api_key_scopes`: the scopes of the current HTTP request's key (`anonymous` without
/// one), set by the pre-request check; functions and views check them.
pub static API_KEY_SCOPES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `invoices.authorized_call`: the public function that passed its scope check in this
/// transaction; the functions it calls run for it.
pub static AUTHORIZED_CALL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `invoices.anonymous_rate_limit_per_minute`: requests per minute per client address without
/// an API key.
pub static ANONYMOUS_RATE_LIMIT_PER_MINUTE: GucSetting<i32> = GucSetting::<i32>::new(100);

/// `invoices.max_rate_limit_per_minute`: the highest rate limit `create_api_key` may give a key.
pub static MAX_RATE_LIMIT_PER_MINUTE: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// `invoices.allow_private_destinations`: let webhooks and callbacks go to loopback, private,
/// link-local and CGNAT addresses (local development and tests only).
pub static ALLOW_PRIVATE_DESTINATIONS: GucSetting<bool> = GucSetting::<bool>::new(false);

/// `invoices.address_pause_minutes`: how long a deposit address rests after its invoice expired,
/// was cancelled or confirmed, before the carousel hands it out again (an invoice's own
/// pause_minutes overrides it).
pub static ADDRESS_PAUSE_MINUTES: GucSetting<i32> = GucSetting::<i32>::new(1440);

pub fn register() {
    GucRegistry::define_string_guc(
        c"invoices.public_base_url",
        c"Base URL of hosted invoice pages and PDF links.",
        c"Hosted invoice URL = <public_base_url>/i/<slug>. No trailing slash.",
        &PUBLIC_BASE_URL,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"invoices.background_worker",
        c"Run the invoices background worker on this server.",
        c"On one server per database: the single node, or a Citus cluster's coordinator. Off on Citus worker nodes, which only hold shards.",
        &BACKGROUND_WORKER,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"invoices.database",
        c"Database the invoices background worker connects to.",
        c"The database where CREATE EXTENSION invoices was run.",
        &DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"invoices.merchant_id",
        c"Merchant the current session or request acts for (set by invoices.act_as).",
        c"Row-level security and every invoices.* function scope to this merchant.",
        &MERCHANT_ID,
        // Only superuser-owned code (act_as, the API-key check) may set it: a plain role
        // cannot switch merchants with SET.
        GucContext::Suset,
        GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_string_guc(
        c"invoices.api_key_id",
        c"API key of the current HTTP request (set by the pre-request check).",
        c"Recorded as the actor of audit entries. Only superuser-owned code may set it.",
        &API_KEY_ID,
        GucContext::Suset,
        GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_int_guc(
        c"invoices.rate_limit_per_minute",
        c"Requests per minute allowed per API key over HTTP.",
        c"Past it PostgREST answers 429 with Retry-After. A key's own rate_limit_per_minute overrides it.",
        &RATE_LIMIT_PER_MINUTE,
        1,
        10_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"invoices.idempotency_key",
        c"Idempotency key of the current request (copied from the Idempotency-Key header).",
        c"create/finalize/cancel calls with the same key and arguments within 24 h return the first result.",
        &IDEMPOTENCY_KEY,
        GucContext::Userset,
        GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_string_guc(
        c"invoices.checkout_frame_ancestors",
        c"Which pages may show the hosted checkout in a frame: a CSP frame-ancestors source list.",
        c"* (the default) lets the pay button open the checkout in a modal on any merchant's page; list the merchants' origins (https://shop.example) to allow only those, or 'none' to forbid framing.",
        &CHECKOUT_FRAME_ANCESTORS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"invoices.page_poll_ms",
        c"Milliseconds between the hosted invoice page's status polls.",
        c"The page's script calls invoice_status this often until the invoice is paid, expired or cancelled.",
        &PAGE_POLL_MS,
        1000,
        60_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"invoices.smtp_url",
        c"SMTP relay for invoice e-mails: smtp://[user:password@]host[:port][?tls=required|none] or smtps://[user:password@]host[:port].",
        c"Unset: send_invoice queues e-mails that wait until a relay is configured. smtp:// uses STARTTLS when the relay offers it (port 25 by default), smtps:// TLS from the start (port 465). A user and password are only sent over TLS unless invoices.smtp_allow_cleartext_auth is on.",
        &SMTP_URL,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_bool_guc(
        c"invoices.smtp_allow_cleartext_auth",
        c"Let the SMTP relay's user and password be sent without TLS.",
        c"For a relay on the same host or a trusted local network only. Off: an smtp_url with credentials needs STARTTLS or smtps, or the e-mail is not sent.",
        &SMTP_ALLOW_CLEARTEXT_AUTH,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"invoices.smtp_ca_file",
        c"PEM file of CA certificates trusted for the SMTP relay, besides the Mozilla roots.",
        c"For a relay whose certificate a private CA issued. Read by the worker (the server's OS user); certificates are always verified.",
        &SMTP_CA_FILE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"invoices.smtp_from",
        c"Sender address (From) of invoice e-mails.",
        c"The merchant's name is shown as the sender's display name.",
        &SMTP_FROM,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"invoices.worker_naptime_ms",
        c"Milliseconds the background worker sleeps between ticks.",
        c"Expiry and overdue sweeps run every tick, so a deadline is acted on within about this long.",
        &WORKER_NAPTIME_MS,
        10,
        60_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"invoices.rate_max_age_seconds",
        c"Rates older than this are stale: quotes ignore them.",
        c"The rate of a quote is the median of the pair's sources observed within this many seconds.",
        &RATE_MAX_AGE_SECONDS,
        1,
        31_536_000,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"invoices.actor",
        c"Actor recorded in the audit log for changes made without an API key.",
        c"The background worker sets it to 'worker'. Only superusers may set it.",
        &ACTOR,
        GucContext::Suset,
        GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_int_guc(
        c"invoices.webhook_concurrency",
        c"Webhook deliveries the worker sends at once.",
        c"Each runs on its own thread, outside any transaction.",
        &WEBHOOK_CONCURRENCY,
        1,
        256,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"invoices.webhook_timeout_ms",
        c"Milliseconds a webhook receiver has to answer.",
        c"No answer in time is a failed attempt, retried on invoices.webhook_retry_schedule.",
        &WEBHOOK_TIMEOUT_MS,
        100,
        120_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"invoices.webhook_retry_schedule",
        c"Delays between webhook attempts, comma-separated intervals; then dead letter.",
        c"Default 1min,5min,15min,1h,2h: six attempts in all. An invoice's attempts_callback overrides the number of retries of its callback.",
        &WEBHOOK_RETRY_SCHEDULE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"invoices.api_key_scopes",
        c"Scopes of the current HTTP request's API key (set by the pre-request check).",
        c"anonymous without a key. Only superuser-owned code may set it.",
        &API_KEY_SCOPES,
        GucContext::Suset,
        GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_string_guc(
        c"invoices.authorized_call",
        c"The public function that passed its scope check in this transaction.",
        c"Set by invoices_internal.authorize(); only superuser-owned code may set it.",
        &AUTHORIZED_CALL,
        GucContext::Suset,
        GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_int_guc(
        c"invoices.anonymous_rate_limit_per_minute",
        c"Requests per minute allowed per client address without an API key.",
        c"The client address is the web front's X-Real-IP; past the limit PostgREST answers 429 with Retry-After.",
        &ANONYMOUS_RATE_LIMIT_PER_MINUTE,
        1,
        10_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"invoices.max_rate_limit_per_minute",
        c"The highest rate_limit_per_minute create_api_key may give a key.",
        c"So a key cannot lift its own rate limit by creating another.",
        &MAX_RATE_LIMIT_PER_MINUTE,
        1,
        10_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"invoices.allow_private_destinations",
        c"Allow webhook and callback URLs on loopback, private, link-local and CGNAT addresses.",
        c"For local development and tests only; set it per database (ALTER DATABASE ... SET), never cluster-wide.",
        &ALLOW_PRIVATE_DESTINATIONS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"invoices.address_pause_minutes",
        c"Minutes a deposit address rests after its invoice ends before it is handed out again.",
        c"Late payments in that window still find their invoice. An invoice's pause_minutes (at least 10) overrides it.",
        &ADDRESS_PAUSE_MINUTES,
        0,
        525_600,
        GucContext::Suset,
        GucFlags::default(),
    );
}
