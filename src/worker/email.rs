//! The e-mail task: claims due invoice e-mails (document and PDF rendered by SQL), builds each
//! message with `domain::mail` (lettre's builder) and hands it to the relay in
//! `invoices.smtp_url` with lettre's SMTP transport on a thread (connect, TLS, SMTP dialogue,
//! outside any transaction), then records every outcome. Without a relay configured the queue
//! waits; a relay setting that breaks the TLS rule (credentials without TLS) is a configuration
//! error of the task, and the queue waits too.

use super::error::{Result, WorkerError};
use super::in_transaction;
use super::task::{Step, Task};
use super::threads::Batch;
use crate::domain::document::{email_text, InvoiceDoc};
use crate::domain::mail;
use crate::settings;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{SmtpTransport, Transport};
use pgrx::prelude::*;
use std::time::{Duration, SystemTime};

struct Email {
    merchant_id: pgrx::Uuid,
    id: i64,
    recipient: String,
    merchant_name: String,
    document: serde_json::Value,
    pdf: Vec<u8>,
    relay: Relay,
    from: String,
}

struct Outcome {
    merchant_id: pgrx::Uuid,
    id: i64,
    result: std::result::Result<String, mail::SmtpError>,
}

/// The relay as configured: the transport (TLS parameters built) and what errors are told with.
#[derive(Clone)]
struct Relay {
    transport: SmtpTransport,
    label: String,
    policy: mail::Policy,
}

/// What the relay was built from; it is built again when any of it changes.
#[derive(PartialEq)]
struct RelayKey {
    url: String,
    allow_cleartext_auth: bool,
    ca_file: Option<(String, Option<SystemTime>, u64)>,
}

pub struct Sends {
    inflight: Batch<Outcome>,
    relay: Option<(RelayKey, Relay)>,
}

impl Default for Sends {
    fn default() -> Self {
        Sends { inflight: Batch::new(), relay: None }
    }
}

const TIMEOUT: Duration = Duration::from_secs(20);

fn send_one(e: Email) -> Outcome {
    let result = deliver(&e);
    Outcome { merchant_id: e.merchant_id, id: e.id, result }
}

fn deliver(e: &Email) -> std::result::Result<String, mail::SmtpError> {
    let doc = InvoiceDoc::from_json(&e.document).map_err(|err| mail::SmtpError { permanent: true, message: err.message })?;
    let (subject, text) = email_text(&doc);
    let message_id = format!("invoice-{}-{}@{}", doc.slug, e.id, e.from.rsplit('@').next().unwrap_or("localhost"));
    let file = format!("{}.pdf", doc.invoice_number);
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let message = mail::build(&mail::Message {
        from_name: &e.merchant_name,
        from_address: &e.from,
        to: &e.recipient,
        subject: &subject,
        text: &text,
        attachment: Some((&file, "application/pdf", &e.pdf)),
        message_id: &message_id,
        date_unix: now,
    })?;
    match e.relay.transport.send(&message) {
        Ok(response) => Ok(response.message().collect::<Vec<_>>().join(" ")),
        Err(err) => Err(failure(&err, &e.relay)),
    }
}

/// A lettre error as an outcome: a 5xx answer is permanent, a 4xx answer or a connection, TLS
/// or network error temporary; a relay without STARTTLS while credentials need it is permanent
/// (the configuration has to change) and says which setting.
fn failure(err: &lettre::transport::smtp::Error, relay: &Relay) -> mail::SmtpError {
    let text = err.to_string();
    if relay.policy.starttls_for_credentials && err.is_client() && text.contains("STARTTLS") {
        return mail::SmtpError { permanent: true, message: mail::no_starttls_for_credentials(&relay.label) };
    }
    let message = if err.status().is_some() {
        format!("relay {}: {text}", relay.label)
    } else {
        format!("connection to {}: {text}", relay.label)
    };
    mail::SmtpError { permanent: err.is_permanent(), message }
}

fn setting(s: &pgrx::guc::GucSetting<Option<std::ffi::CString>>) -> Option<String> {
    s.get().and_then(|c| c.into_string().ok()).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The transport for `url` under the TLS rule. Certificates are verified against the Mozilla
/// roots (webpki-roots) plus `invoices.smtp_ca_file`'s certificates, if set.
fn build_relay(url: &mail::SmtpUrl, policy: mail::Policy, ca_file: Option<&str>) -> std::result::Result<Relay, String> {
    let tls_parameters = || -> std::result::Result<TlsParameters, String> {
        let mut builder = TlsParameters::builder(url.host.clone()).certificate_store(CertificateStore::WebpkiRoots);
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("invoices.smtp_ca_file {path:?}: {e}"))?;
            mail::check_ca_pem(&pem)?;
            let ca = Certificate::from_pem(&pem).map_err(|e| format!("invoices.smtp_ca_file {path:?}: {e}"))?;
            builder = builder.add_root_certificate(ca);
        }
        builder.build_rustls().map_err(|e| format!("TLS for {}: {e}", url.label()))
    };
    let tls = match policy.tls {
        mail::TlsMode::None => Tls::None,
        mail::TlsMode::Opportunistic => Tls::Opportunistic(tls_parameters()?),
        mail::TlsMode::Required => Tls::Required(tls_parameters()?),
        mail::TlsMode::Implicit => Tls::Wrapper(tls_parameters()?),
    };
    let mut builder = SmtpTransport::builder_dangerous(url.host.clone())
        .port(url.port)
        .tls(tls)
        .timeout(Some(TIMEOUT))
        .hello_name(ClientId::Domain("invoices".into()));
    if let Some(c) = &url.credentials {
        builder = builder.credentials(Credentials::new(c.user.clone(), c.password.clone()));
    }
    Ok(Relay { transport: builder.build(), label: url.label(), policy })
}

impl Task for Sends {
    fn name(&self) -> &str {
        "email"
    }

    fn every(&self) -> Duration {
        Duration::from_millis(500)
    }

    fn run(&mut self) -> Result<Step> {
        self.step().map(Step::Done)
    }
}

impl Sends {
    /// The relay of `invoices.smtp_url` under `invoices.smtp_allow_cleartext_auth` and
    /// `invoices.smtp_ca_file`, built again only when one of them (or the CA file) changed.
    fn relay(&mut self, url: String) -> std::result::Result<Relay, String> {
        let ca_path = setting(&settings::SMTP_CA_FILE);
        let key = RelayKey {
            url,
            allow_cleartext_auth: settings::SMTP_ALLOW_CLEARTEXT_AUTH.get(),
            ca_file: ca_path.map(|p| {
                let meta = std::fs::metadata(&p).ok();
                let (modified, len) = (meta.as_ref().and_then(|m| m.modified().ok()), meta.map(|m| m.len()).unwrap_or(0));
                (p, modified, len)
            }),
        };
        if let Some((built, relay)) = &self.relay {
            if *built == key {
                return Ok(relay.clone());
            }
        }
        self.relay = None;
        let url = mail::SmtpUrl::parse(&key.url)?;
        let policy = url.policy(key.allow_cleartext_auth)?;
        let relay = build_relay(&url, policy, key.ca_file.as_ref().map(|(p, _, _)| p.as_str()))?;
        self.relay = Some((key, relay.clone()));
        Ok(relay)
    }

    /// One step: record what finished, claim and start what is due. Returns a summary.
    fn step(&mut self) -> Result<serde_json::Value> {
        let done = self.inflight.collect();
        let (mut sent, mut failed) = (0, 0);
        if !done.is_empty() {
            for o in &done {
                if o.result.is_ok() { sent += 1 } else { failed += 1 }
            }
            in_transaction(move || {
                for o in &done {
                    let (error, permanent, response) = match &o.result {
                        Ok(r) => (None, false, Some(r.clone())),
                        Err(e) => (Some(e.message.clone()), e.permanent, None),
                    };
                    Spi::run_with_args(
                        "select invoices_internal.record_email($1, $2, $3, $4, $5)",
                        &[o.merchant_id.into(), o.id.into(), error.into(), permanent.into(), response.into()],
                    )?;
                }
                Ok(())
            })?;
        }
        let Some(url) = setting(&settings::SMTP_URL) else {
            return Ok(serde_json::json!({ "relay": null, "sent": sent, "failed": failed }));
        };
        let relay = self.relay(url).map_err(WorkerError::Config)?;
        let label = relay.label.clone();
        let from = settings::SMTP_FROM
            .get()
            .and_then(|c| c.into_string().ok())
            .filter(|s| mail::valid_address(s))
            .ok_or_else(|| WorkerError::Config("invoices.smtp_from is not an e-mail address".into()))?;
        let mut started = 0;
        if self.inflight.idle() {
            // (the relay stays out of the transaction's closure: it must be unwind-safe)
            let rows = in_transaction(move || {
                Spi::connect_mut(|client| {
                    let rows = client.update(
                        "select merchant_id, id, recipient, merchant_name, document, pdf \
                           from invoices_internal.claim_emails(8, 120)",
                        None,
                        &[],
                    )?;
                    let mut out = Vec::new();
                    for row in rows {
                        out.push((
                            row.get::<pgrx::Uuid>(1)?.ok_or_else(|| WorkerError::spi("null merchant"))?,
                            row.get::<i64>(2)?.unwrap_or_default(),
                            row.get::<String>(3)?.unwrap_or_default(),
                            row.get::<String>(4)?.unwrap_or_default(),
                            row.get::<pgrx::JsonB>(5)?.map(|j| j.0).unwrap_or_default(),
                            row.get::<Vec<u8>>(6)?.unwrap_or_default(),
                        ));
                    }
                    Ok(out)
                })
            })?;
            let due: Vec<Email> = rows
                .into_iter()
                .map(|(merchant_id, id, recipient, merchant_name, document, pdf)| Email {
                    merchant_id,
                    id,
                    recipient,
                    merchant_name,
                    document,
                    pdf,
                    relay: relay.clone(),
                    from: from.clone(),
                })
                .collect();
            started = due.len();
            self.inflight.start(due, send_one);
        }
        Ok(serde_json::json!({ "relay": label, "sent": sent, "failed": failed, "started": started }))
    }
}
