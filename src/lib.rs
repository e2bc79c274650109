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

// The hand-written SQL. Each file names what it needs: the files whose objects it uses and the
// Rust functions it calls, so pgrx orders them by their real dependencies (the numbers give
// the same order; each file's header says what it needs and provides).
pgrx::extension_sql_file!("../sql/00_bootstrap.sql", name = "bootstrap", bootstrap);
pgrx::extension_sql_file!(
    "../sql/05_errors.sql",
    name = "errors",
    requires = [
        "bootstrap",
        api::gateway::invoices_internal::http_status
    ]
);
pgrx::extension_sql_file!(
    "../sql/10_tables.sql",
    name = "tables",
    requires = [
        "bootstrap",
        api::ids::invoices_internal::currency_list,
        api::ids::invoices_internal::is_currency,
        api::ids::invoices_internal::new_slug,
        api::ids::invoices_internal::uuid_v7
    ]
);
pgrx::extension_sql_file!(
    "../sql/12_outbox.sql",
    name = "outbox",
    requires = [
        "errors",
        "tables",
        api::documents::invoices_internal::is_email,
        api::ids::invoices_internal::uuid_v7
    ]
);
pgrx::extension_sql_file!(
    "../sql/15_tenancy.sql",
    name = "tenancy",
    requires = [
        "errors",
        "tables"
    ]
);
pgrx::extension_sql_file!(
    "../sql/20_api_keys.sql",
    name = "api_keys",
    requires = [
        "errors",
        "tables",
        "tenancy",
        api::gateway::invoices_internal::api_key_usage,
        api::gateway::invoices_internal::issue_api_key,
        api::gateway::invoices_internal::new_secret,
        api::gateway::invoices_internal::prepare_api_key,
        api::ids::invoices_internal::uuid_v7
    ]
);
pgrx::extension_sql_file!(
    "../sql/25_rates_quotes.sql",
    name = "rates_quotes",
    requires = [
        "errors",
        "tables",
        "tenancy",
        api::ids::invoices_internal::is_currency,
        api::rates::invoices_internal::median_rate,
        api::rates::invoices_internal::quote_asset_amount,
        api::rates::invoices_internal::rate_source_url
    ]
);
pgrx::extension_sql_file!(
    "../sql/30_wallets.sql",
    name = "wallets",
    requires = [
        "errors",
        "tables",
        "tenancy",
        "rates_quotes",
        api::ids::invoices_internal::uuid_v7,
        api::wallets::invoices_internal::check_wallet_address,
        api::wallets::invoices_internal::derive_wallet_address
    ]
);
pgrx::extension_sql_file!(
    "../sql/35_status_machine.sql",
    name = "status_machine",
    requires = [
        "tables",
        "outbox",
        "wallets",
        api::invoices::invoices_internal::check_transition
    ]
);
pgrx::extension_sql_file!(
    "../sql/40_views.sql",
    name = "views",
    requires = [
        "tables",
        "tenancy"
    ]
);
pgrx::extension_sql_file!(
    "../sql/50_invoices.sql",
    name = "invoices",
    requires = [
        "errors",
        "tables",
        "outbox",
        "tenancy",
        "api_keys",
        "wallets",
        "views",
        api::ids::invoices_internal::format_invoice_number,
        api::ids::invoices_internal::new_slug,
        api::ids::invoices_internal::uuid_v7,
        api::invoices::invoices_internal::prepare_merchant,
        api::invoices::invoices_internal::prepare_new_invoice,
        api::invoices::invoices_internal::transition_problem
    ]
);
pgrx::extension_sql_file!(
    "../sql/55_gateway.sql",
    name = "gateway",
    requires = [
        "errors",
        "tenancy",
        "api_keys",
        "views",
        api::gateway::invoices_internal::http_route,
        api::gateway::invoices_internal::new_secret,
        api::gateway::invoices_internal::rate_limit_hit
    ]
);
pgrx::extension_sql_file!(
    "../sql/60_worker.sql",
    name = "worker",
    requires = [
        "outbox",
        "tenancy",
        "api_keys",
        "rates_quotes",
        api::gateway::invoices_internal::api_key_usage
    ]
);
pgrx::extension_sql_file!(
    "../sql/65_webhooks.sql",
    name = "webhooks",
    requires = [
        "errors",
        "outbox",
        "tenancy",
        api::webhooks::invoices_internal::destination_problem,
        api::webhooks::invoices_internal::new_webhook_secret,
        api::webhooks::invoices_internal::verify_signature,
        api::seeds::invoices_internal::webhook_body
    ]
);
pgrx::extension_sql_file!(
    "../sql/70_chains.sql",
    name = "chains",
    requires = [
        "errors",
        "tenancy",
        api::webhooks::invoices_internal::redact_urls,
        api::webhooks::invoices_internal::url_origin
    ]
);
pgrx::extension_sql_file!(
    "../sql/72_payments.sql",
    name = "payments",
    requires = [
        "errors",
        "tables",
        "outbox",
        "tenancy",
        "chains",
        api::settlement::invoices_internal::settlement
    ]
);
pgrx::extension_sql_file!(
    "../sql/74_polls.sql",
    name = "polls",
    requires = [
        "tables",
        "outbox",
        "wallets",
        "chains",
        "payments",
        api::settlement::invoices_internal::payment_holder,
        api::settlement::invoices_internal::payment_is_late,
        api::webhooks::invoices_internal::redact_urls,
        api::webhooks::invoices_internal::url_origin
    ]
);
pgrx::extension_sql_file!(
    "../sql/75_payment_links.sql",
    name = "payment_links",
    requires = [
        "errors",
        "tables",
        "tenancy",
        "invoices",
        "gateway",
        api::ids::invoices_internal::uuid_v7
    ]
);
pgrx::extension_sql_file!(
    "../sql/77_schedules.sql",
    name = "schedules",
    requires = [
        "errors",
        "tables",
        "outbox",
        "tenancy",
        "invoices",
        api::ids::invoices_internal::uuid_v7,
        api::schedules::invoices_internal::check_schedule_rule,
        api::schedules::invoices_internal::schedule_run_date
    ]
);
pgrx::extension_sql_file!(
    "../sql/80_analytics.sql",
    name = "analytics",
    requires = [
        "tables",
        "tenancy",
        "rates_quotes",
        "payments"
    ]
);
pgrx::extension_sql_file!(
    "../sql/85_documents.sql",
    name = "documents",
    requires = [
        "errors",
        "tables",
        "outbox",
        "tenancy",
        "invoices",
        "chains",
        api::documents::invoices_internal::render_hosted_page,
        api::documents::invoices_internal::render_invoice_pdf,
        api::documents::invoices_internal::widget_source
    ]
);
pgrx::extension_sql_file!(
    "../sql/87_email.sql",
    name = "email",
    requires = [
        "errors",
        "tables",
        "outbox",
        "tenancy",
        "invoices",
        "documents",
        api::documents::invoices_internal::render_invoice_pdf
    ]
);
pgrx::extension_sql_file!(
    "../sql/88_seeds.sql",
    name = "seeds",
    requires = [
        "errors",
        "tenancy",
        "views",
        "invoices",
        "payments",
        "gateway",
        "payment_links",
        "rates_quotes",
        "webhooks",
        "email",
        "documents",
        "chains",
        "wallets",
        api::gateway::invoices_internal::http_status,
        api::seeds::invoices_internal::seed_route,
        api::seeds::invoices_internal::seed_query,
        api::seeds::invoices_internal::seed_error_status,
        api::seeds::invoices_internal::seed_error_body,
        api::seeds::invoices_internal::seed_v1_create_args,
        api::seeds::invoices_internal::seed_v1_list_params,
        api::seeds::invoices_internal::seed_v1_include_payments,
        api::seeds::invoices_internal::seed_v1_invoice,
        api::seeds::invoices_internal::seed_v1_status,
        api::seeds::invoices_internal::seed_btpay_payment_link_args,
        api::seeds::invoices_internal::seed_btpay_payment_link,
        api::seeds::invoices_internal::seed_btpay_webhook_args,
        api::seeds::invoices_internal::seed_btpay_webhook,
        api::seeds::invoices_internal::seed_btpay_webhook_id,
        api::seeds::invoices_internal::seed_kibble_create_args,
        api::seeds::invoices_internal::seed_kibble_created,
        api::seeds::invoices_internal::seed_afc_create_args,
        api::seeds::invoices_internal::seed_afc_invoice,
        api::webhooks::invoices_internal::new_webhook_secret
    ]
);
pgrx::extension_sql_file!(
    "../sql/89_distribution.sql",
    name = "distribution",
    requires = [
        "tenancy"
    ]
);
pgrx::extension_sql_file!("../sql/90_security.sql", name = "security", finalize);
