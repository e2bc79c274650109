//! The e-mail task: claims due invoice e-mails (document and PDF rendered by SQL), composes
//! each message with `domain::mail` and hands it to the relay in `invoices.smtp_url` on a
//! thread (connect, SMTP dialogue, outside any transaction), then records every outcome.
//! Without a relay configured the queue waits.

use super::error::{Result, WorkerError};
use super::in_transaction;
use super::task::{Step, Task};
use super::threads::Batch;
use crate::domain::document::{email_text, InvoiceDoc};
use crate::domain::mail;
use crate::settings;
use pgrx::prelude::*;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

struct Email {
    merchant_id: pgrx::Uuid,
    id: i64,
    recipient: String,
    merchant_name: String,
    document: serde_json::Value,
    pdf: Vec<u8>,
    relay: mail::SmtpUrl,
    from: String,
}

struct Outcome {
    merchant_id: pgrx::Uuid,
    id: i64,
    result: std::result::Result<String, mail::SmtpError>,
}

pub struct Sends {
    inflight: Batch<Outcome>,
}

impl Default for Sends {
    fn default() -> Self {
        Sends { inflight: Batch::new() }
    }
}

const TIMEOUT: Duration = Duration::from_secs(20);

fn send_one(e: Email) -> Outcome {
    let result = deliver(&e);
    Outcome { merchant_id: e.merchant_id, id: e.id, result }
}

fn deliver(e: &Email) -> std::result::Result<String, mail::SmtpError> {
    let temporary = |message: String| mail::SmtpError { permanent: false, message };
    let doc = InvoiceDoc::from_json(&e.document).map_err(|err| mail::SmtpError { permanent: true, message: err.message })?;
    let (subject, text) = email_text(&doc);
    let message_id = format!("invoice-{}-{}@{}", doc.slug, e.id, e.from.rsplit('@').next().unwrap_or("localhost"));
    let file = format!("{}.pdf", doc.invoice_number);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let data = mail::compose(&mail::Message {
        from_name: &e.merchant_name,
        from_address: &e.from,
        to: &e.recipient,
        subject: &subject,
        text: &text,
        attachment: Some((&file, "application/pdf", &e.pdf)),
        message_id: &message_id,
        date_unix: now,
    });
    let addr = (e.relay.host.as_str(), e.relay.port)
        .to_socket_addrs()
        .map_err(|err| temporary(format!("resolving {}: {err}", e.relay.host)))?
        .next()
        .ok_or_else(|| temporary(format!("no address for {}", e.relay.host)))?;
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|err| temporary(format!("connecting to {addr}: {err}")))?;
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let auth = match (&e.relay.user, &e.relay.password) {
        (Some(u), Some(p)) => Some((u.as_str(), p.as_str())),
        _ => None,
    };
    mail::send(stream, "invoices", auth, &e.from, &e.recipient, &data)
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
        let relay = settings::SMTP_URL.get().and_then(|c| c.into_string().ok()).filter(|s| !s.is_empty());
        let Some(relay) = relay else {
            return Ok(serde_json::json!({ "relay": null, "sent": sent, "failed": failed }));
        };
        let relay = mail::SmtpUrl::parse(&relay).map_err(WorkerError::Config)?;
        let label = format!("{}:{}", relay.host, relay.port);
        let from = settings::SMTP_FROM
            .get()
            .and_then(|c| c.into_string().ok())
            .filter(|s| mail::valid_address(s))
            .ok_or_else(|| WorkerError::Config("invoices.smtp_from is not an e-mail address".into()))?;
        let mut started = 0;
        if self.inflight.idle() {
            let due = in_transaction(move || {
                Spi::connect_mut(|client| {
                    let rows = client.update(
                        "select merchant_id, id, recipient, merchant_name, document, pdf \
                           from invoices_internal.claim_emails(8, 120)",
                        None,
                        &[],
                    )?;
                    let mut out = Vec::new();
                    for row in rows {
                        out.push(Email {
                            merchant_id: row.get::<pgrx::Uuid>(1)?.ok_or_else(|| WorkerError::spi("null merchant"))?,
                            id: row.get::<i64>(2)?.unwrap_or_default(),
                            recipient: row.get::<String>(3)?.unwrap_or_default(),
                            merchant_name: row.get::<String>(4)?.unwrap_or_default(),
                            document: row.get::<pgrx::JsonB>(5)?.map(|j| j.0).unwrap_or_default(),
                            pdf: row.get::<Vec<u8>>(6)?.unwrap_or_default(),
                            relay: relay.clone(),
                            from: from.clone(),
                        });
                    }
                    Ok(out)
                })
            })?;
            started = due.len();
            self.inflight.start(due, send_one);
        }
        Ok(serde_json::json!({ "relay": label, "sent": sent, "failed": failed, "started": started }))
    }
}
