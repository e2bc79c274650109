//! `invoices`: crypto invoicing inside PostgreSQL.
//!
//! This file only wires the extension together: the module magic, `_PG_init` (settings now;
//! shared memory and the background worker as they land), and the SQL files of `sql/` in the
//! order they must run. Domain rules live in the pure `invoices-domain` crate; `api/` holds the
//! thin `#[pg_extern]` wrappers.

use pgrx::prelude::*;

pub mod api;
pub mod error;
pub mod settings;
pub mod shmem;
pub mod worker;

pub use invoices_domain as domain;

pgrx::pg_module_magic!();

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // Settings and workers can only be registered while the postmaster loads us through
    // shared_preload_libraries; a plain LOAD or CREATE EXTENSION in one backend must not try.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    settings::register();
    shmem::init();
    worker::register();
}

// The hand-written SQL, in dependency order. Each file reads as part of the API reference.
pgrx::extension_sql_file!("../sql/00_bootstrap.sql", name = "bootstrap", bootstrap);
pgrx::extension_sql_file!(
    "../sql/10_tables.sql",
    name = "tables",
    requires = [
        api::ids::invoices_internal::uuid_v7,
        api::ids::invoices_internal::new_slug,
        api::ids::invoices_internal::currency_list,
        api::ids::invoices_internal::is_currency,
        api::invoices::invoices_internal::check_transition
    ]
);
pgrx::extension_sql_file!(
    "../sql/15_tenancy.sql",
    name = "tenancy",
    requires = ["tables"]
);
pgrx::extension_sql_file!(
    "../sql/20_views.sql",
    name = "views",
    requires = ["tenancy"]
);
pgrx::extension_sql_file!(
    "../sql/30_invoices.sql",
    name = "invoice_functions",
    requires = [
        "views",
        api::invoices::invoices_internal::prepare_invoice,
        api::invoices::invoices_internal::prepare_merchant,
        api::invoices::invoices_internal::transition_problem,
        api::ids::invoices_internal::format_invoice_number
    ]
);
pgrx::extension_sql_file!(
    "../sql/40_http.sql",
    name = "http",
    requires = [
        "invoice_functions",
        api::http::invoices_internal::issue_api_key,
        api::http::invoices_internal::prepare_api_key,
        api::http::invoices_internal::new_secret,
        api::http::invoices_internal::http_route,
        api::http::invoices_internal::http_status,
        api::http::invoices_internal::rate_limit_hit,
        api::http::invoices_internal::api_key_usage
    ]
);
pgrx::extension_sql_file!(
    "../sql/50_rates_quotes.sql",
    name = "rates_quotes",
    requires = [
        "http",
        api::rates::invoices_internal::median_rate,
        api::rates::invoices_internal::quote_asset_amount,
        api::rates::invoices_internal::rate_source_url
    ]
);
pgrx::extension_sql_file!(
    "../sql/55_wallets.sql",
    name = "wallets",
    requires = [
        "rates_quotes",
        api::wallets::invoices_internal::derive_wallet_address,
        api::wallets::invoices_internal::check_wallet_address
    ]
);
pgrx::extension_sql_file!("../sql/60_worker.sql", name = "worker", requires = ["wallets"]);
pgrx::extension_sql_file!(
    "../sql/65_webhooks.sql",
    name = "webhooks",
    requires = [
        "worker",
        api::webhooks::invoices_internal::new_webhook_secret,
        api::webhooks::invoices_internal::verify_signature,
        api::webhooks::invoices_internal::destination_problem,
        api::webhooks::invoices_internal::url_origin,
        api::webhooks::invoices_internal::redact_urls
    ]
);
pgrx::extension_sql_file!(
    "../sql/70_chains.sql",
    name = "chains",
    requires = [
        "webhooks",
        api::settlement::invoices_internal::settlement,
        api::settlement::invoices_internal::payment_holder,
        api::settlement::invoices_internal::payment_is_late
    ]
);
pgrx::extension_sql_file!("../sql/75_payment_links.sql", name = "payment_links", requires = ["chains"]);
pgrx::extension_sql_file!("../sql/80_analytics.sql", name = "analytics", requires = ["payment_links"]);
pgrx::extension_sql_file!(
    "../sql/85_documents.sql",
    name = "documents",
    requires = [
        "analytics",
        api::documents::invoices_internal::render_invoice_pdf,
        api::documents::invoices_internal::render_hosted_page
    ]
);
pgrx::extension_sql_file!(
    "../sql/87_email.sql",
    name = "email",
    requires = ["documents", api::documents::invoices_internal::is_email]
);
pgrx::extension_sql_file!("../sql/89_distribution.sql", name = "distribution", requires = ["email"]);
pgrx::extension_sql_file!("../sql/90_security.sql", name = "security", finalize);
