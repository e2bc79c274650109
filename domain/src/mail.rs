//! Invoice e-mail: the relay setting (`invoices.smtp_url`), the TLS rule for it, and the message
//! (RFC 5322 + MIME, the PDF attached) built with lettre's builder. The worker sends it with
//! lettre's SMTP transport (src/worker/email.rs); everything decided before a connection is
//! made lives here and is unit-tested.

use std::time::{Duration, SystemTime};

use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};

/// The setting that lets credentials cross the network without TLS (a local relay).
pub const ALLOW_CLEARTEXT_AUTH: &str = "invoices.smtp_allow_cleartext_auth";

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain SMTP, never TLS (`smtp://…?tls=none`).
    None,
    /// STARTTLS when the relay offers it, plain SMTP otherwise (`smtp://…`, the default).
    Opportunistic,
    /// STARTTLS or no e-mail (`smtp://…?tls=required`).
    Required,
    /// TLS from the first byte (`smtps://…`, port 465 style).
    Implicit,
}

/// A user and password for the relay (AUTH). Its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("password", &"…").finish()
    }
}

/// `invoices.smtp_url`: `smtp://[user:password@]host[:port][?tls=opportunistic|required|none]`
/// (port 25 by default) or `smtps://[user:password@]host[:port]` (implicit TLS, port 465 by
/// default). User and password are percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    /// A DNS name or an IP address (an IPv6 one without its brackets).
    pub host: String,
    pub port: u16,
    pub credentials: Option<Credentials>,
    pub tls: TlsMode,
}

const URL_FORMS: &str =
    "invoices.smtp_url must look like smtp://[user:password@]host[:port][?tls=required|opportunistic|none] or smtps://[user:password@]host[:port]";

impl SmtpUrl {
    pub fn parse(s: &str) -> Result<SmtpUrl, String> {
        let url = url::Url::parse(s.trim()).map_err(|e| format!("{URL_FORMS} ({e})"))?;
        let (implicit, default_port) = match url.scheme() {
            "smtp" => (false, 25),
            "smtps" => (true, 465),
            _ => return Err(URL_FORMS.to_string()),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => String::new(),
        };
        if host.is_empty() || host.contains(['%', ' ']) {
            return Err(format!("bad SMTP host in invoices.smtp_url: {host:?}"));
        }
        if !(url.path().is_empty() || url.path() == "/") || url.fragment().is_some() {
            return Err(URL_FORMS.to_string());
        }
        let mut tls = if implicit { TlsMode::Implicit } else { TlsMode::Opportunistic };
        for (key, value) in url.query_pairs() {
            tls = match (key.as_ref(), value.as_ref(), implicit) {
                ("tls", "opportunistic", false) => TlsMode::Opportunistic,
                ("tls", "required", false) => TlsMode::Required,
                ("tls", "none", false) => TlsMode::None,
                ("tls", _, true) => return Err("smtps:// is always TLS: no ?tls= with it".to_string()),
                ("tls", other, false) => {
                    return Err(format!("invoices.smtp_url: tls={other:?} is none of required, opportunistic, none"))
                }
                (other, _, _) => return Err(format!("invoices.smtp_url: unknown parameter {other:?} (only tls)")),
            };
        }
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (user, Some(password)) => Some(Credentials { user: percent_decode(user), password: percent_decode(password) }),
            (_, None) => return Err("invoices.smtp_url: a user needs a password (user:password@host)".to_string()),
        };
        Ok(SmtpUrl { host, port: url.port().unwrap_or(default_port), credentials, tls })
    }

    /// `host:port`, for messages (an IPv6 host in brackets); never the credentials.
    pub fn label(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The TLS rule: credentials only cross the network inside TLS, unless
    /// `invoices.smtp_allow_cleartext_auth` is on (a local relay). With credentials, a plain
    /// `smtp://` URL (opportunistic STARTTLS) therefore requires STARTTLS, and `?tls=none` is a
    /// configuration error. Without credentials the URL's mode stands.
    pub fn policy(&self, allow_cleartext_auth: bool) -> Result<Policy, String> {
        let plain = |tls| Ok(Policy { tls, starttls_for_credentials: false });
        match (self.tls, &self.credentials, allow_cleartext_auth) {
            (tls, None, _) | (tls, Some(_), true) => plain(tls),
            (TlsMode::Required | TlsMode::Implicit, Some(_), false) => plain(self.tls),
            (TlsMode::Opportunistic, Some(_), false) => Ok(Policy { tls: TlsMode::Required, starttls_for_credentials: true }),
            (TlsMode::None, Some(_), false) => Err(format!(
                "invoices.smtp_url has a user and password but tls=none: they would cross the network in clear. \
                 Use smtps:// or STARTTLS (smtp:// without tls=none), or set {ALLOW_CLEARTEXT_AUTH} = on for a local relay"
            )),
        }
    }
}

/// How the worker connects, once the TLS rule is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub tls: TlsMode,
    /// STARTTLS is required only because credentials are sent (the URL asked for opportunistic
    /// STARTTLS): a relay that does not offer it gets `no_starttls_for_credentials`.
    pub starttls_for_credentials: bool,
}

/// Why nothing was sent to a relay that does not offer STARTTLS while credentials are set.
pub fn no_starttls_for_credentials(relay: &str) -> String {
    format!(
        "the relay {relay} does not offer STARTTLS, and its user and password are only sent over TLS: \
         use smtps://, a relay with STARTTLS, or set {ALLOW_CLEARTEXT_AUTH} = on for a local relay"
    )
}

/// `invoices.smtp_ca_file`'s content: PEM with at least one certificate.
pub fn check_ca_pem(pem: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("-----BEGIN CERTIFICATE-----") {
        Ok(())
    } else {
        Err("invoices.smtp_ca_file holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_string())
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// A mailbox the relay is given: the one e-mail check of the project (`validate::is_email`).
pub fn valid_address(addr: &str) -> bool {
    crate::validate::is_email(addr)
}

/// Why a send failed; `permanent` when the relay refused for good (5xx), so retrying is useless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpError {
    pub permanent: bool,
    pub message: String,
}

/// What one e-mail says.
pub struct Message<'a> {
    pub from_name: &'a str,
    pub from_address: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub attachment: Option<(&'a str, &'a str, &'a [u8])>, // file name, media type, bytes
    /// Without the angle brackets.
    pub message_id: &'a str,
    /// Seconds since the Unix epoch (the Date header).
    pub date_unix: i64,
}

/// One line of header text: control characters (CR, LF…) become spaces, so no header is injected.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The message, envelope included (from `from_address` to `to`). An address that is not a
/// mailbox is an error (permanent: the same message fails again).
pub fn build(m: &Message) -> Result<lettre::Message, SmtpError> {
    let permanent = |message: String| SmtpError { permanent: true, message };
    let address = |a: &str| -> Result<lettre::Address, SmtpError> {
        if !valid_address(a) {
            return Err(permanent(format!("not a mailbox: {a:?}")));
        }
        a.parse::<lettre::Address>().map_err(|e| permanent(format!("not a mailbox: {a:?} ({e})")))
    };
    let from_name = one_line(m.from_name).trim().to_string();
    let from = Mailbox::new(Some(from_name).filter(|n| !n.is_empty()), address(m.from_address)?);
    let to = Mailbox::new(None, address(m.to)?);
    let message_id = one_line(m.message_id).replace([' ', '<', '>'], "");
    let date = SystemTime::UNIX_EPOCH + Duration::from_secs(m.date_unix.max(0) as u64);
    let builder = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(one_line(m.subject))
        .date(date)
        .message_id(Some(format!("<{message_id}>")))
        .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("Auto-Submitted"), "auto-generated".to_string()));
    let text = SinglePart::plain(m.text.to_string());
    let built = match m.attachment {
        None => builder.singlepart(text),
        Some((name, media, bytes)) => {
            let name = one_line(name).replace(['"', '\\', '/'], "_");
            let media = ContentType::parse(media).map_err(|e| permanent(format!("media type {media:?}: {e}")))?;
            // base64 whatever the bytes (it never fails)
            let body = Body::new_with_encoding(bytes.to_vec(), ContentTransferEncoding::Base64)
                .map_err(|_| permanent("encoding the attachment".to_string()))?;
            builder.multipart(MultiPart::mixed().singlepart(text).singlepart(Attachment::new(name).body(body, media)))
        }
    };
    built.map_err(|e| permanent(format!("building the message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn creds(user: &str, password: &str) -> Option<Credentials> {
        Some(Credentials { user: user.into(), password: password.into() })
    }

    #[test]
    fn parses_relay_urls() {
        assert_eq!(
            SmtpUrl::parse("smtp://mailer:s%40cret@127.0.0.1:2525").unwrap(),
            SmtpUrl { host: "127.0.0.1".into(), port: 2525, credentials: creds("mailer", "s@cret"), tls: TlsMode::Opportunistic }
        );
        assert_eq!(
            SmtpUrl::parse("smtps://m%C3%BCller:p%3Aw%2Fd@mail.example.com").unwrap(),
            SmtpUrl { host: "mail.example.com".into(), port: 465, credentials: creds("müller", "p:w/d"), tls: TlsMode::Implicit }
        );
        let relay = SmtpUrl::parse("smtp://relay.local").unwrap();
        assert_eq!((relay.port, relay.tls, relay.credentials), (25, TlsMode::Opportunistic, None));
        assert_eq!(SmtpUrl::parse("smtp://relay.local:587/?tls=required").unwrap().tls, TlsMode::Required);
        assert_eq!(SmtpUrl::parse("smtp://relay.local?tls=opportunistic").unwrap().tls, TlsMode::Opportunistic);
        assert_eq!(SmtpUrl::parse("smtp://127.0.0.1:25?tls=none").unwrap().tls, TlsMode::None);
        let v6 = SmtpUrl::parse("smtp://[::1]:2525").unwrap();
        assert_eq!((v6.host.as_str(), v6.label()), ("::1", "[::1]:2525".to_string()));
        for bad in [
            "http://x",
            "smtp://host:99999",
            "smtp://",
            "smtp://:25",
            "smtp://user@relay.local",          // a user without a password
            "smtp://user:@relay.local",
            "smtp://relay.local?tls=maybe",
            "smtp://relay.local?starttls=1",
            "smtps://relay.local?tls=none",     // smtps is always TLS
            "smtp://relay.local/path",
            "smtp://relay.local#x",
            "relay.local:25",
        ] {
            assert!(SmtpUrl::parse(bad).is_err(), "{bad}");
        }
        // the password never shows in Debug or in the label
        let u = SmtpUrl::parse("smtps://mailer:hunter2@mail.example.com:465").unwrap();
        assert!(!format!("{u:?}").contains("hunter2") && !u.label().contains("hunter2"));
    }

    #[test]
    fn credentials_need_tls_unless_allowed() {
        let url = |s: &str| SmtpUrl::parse(s).unwrap();
        let policy = |s: &str, allow: bool| url(s).policy(allow);
        let p = |tls, forced| Ok(Policy { tls, starttls_for_credentials: forced });
        // without credentials every mode stands (the local plaintext relay of the tests)
        assert_eq!(policy("smtp://127.0.0.1:2525", false), p(TlsMode::Opportunistic, false));
        assert_eq!(policy("smtp://127.0.0.1:2525?tls=none", false), p(TlsMode::None, false));
        // with credentials: TLS, or nothing
        assert_eq!(policy("smtps://u:p@relay.test", false), p(TlsMode::Implicit, false));
        assert_eq!(policy("smtp://u:p@relay.test:587?tls=required", false), p(TlsMode::Required, false));
        assert_eq!(policy("smtp://u:p@relay.test:587", false), p(TlsMode::Required, true));
        let refused = policy("smtp://u:p@relay.test:25?tls=none", false).unwrap_err();
        assert!(refused.contains(ALLOW_CLEARTEXT_AUTH) && !refused.contains("u:p"), "{refused}");
        // the explicit exception for a local relay
        assert_eq!(policy("smtp://u:p@127.0.0.1:2525", true), p(TlsMode::Opportunistic, false));
        assert_eq!(policy("smtp://u:p@127.0.0.1:2525?tls=none", true), p(TlsMode::None, false));
        assert_eq!(policy("smtps://u:p@relay.test", true), p(TlsMode::Implicit, false));
        assert!(no_starttls_for_credentials("127.0.0.1:2525").contains(ALLOW_CLEARTEXT_AUTH));
    }

    #[test]
    fn ca_file_content() {
        assert!(check_ca_pem(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").is_ok());
        assert!(check_ca_pem(b"").unwrap_err().contains("invoices.smtp_ca_file"));
        assert!(check_ca_pem(b"-----BEGIN PRIVATE KEY-----\n").is_err());
    }

    fn sample<'a>() -> Message<'a> {
        Message {
            from_name: "Müller \"GmbH\"",
            from_address: "billing@shop.test",
            to: "bob@example.com",
            subject: "Invoice INV-0001 from Müller GmbH - 300.00 USD",
            text: "Hello Bob,\n\n.hidden dot\nView and pay the invoice online:\n  https://pay.shop.test/i/abc\n",
            attachment: Some(("INV-0001.pdf", "application/pdf", b"%PDF-1.7 fake")),
            message_id: "invoice-abc-1@shop.test",
            date_unix: 1_795_680_000,
        }
    }

    /// The decoded bodies of the base64 and quoted-printable parts, to look into them.
    fn unfold(raw: &str) -> String {
        let mut out = raw.to_string();
        for part in raw.split("\r\n\r\n").skip(1) {
            let chunk = part.split("\r\n--").next().unwrap_or("");
            let joined: String = chunk.split("\r\n").collect();
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(joined.trim()) {
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
            out.push_str(&chunk.replace("=\r\n", "").replace("=3D", "="));
        }
        out
    }

    #[test]
    fn builds_the_message() {
        let msg = build(&sample()).unwrap();
        let env = msg.envelope();
        assert_eq!(env.from().map(|a| a.to_string()), Some("billing@shop.test".to_string()));
        assert_eq!(env.to().iter().map(|a| a.to_string()).collect::<Vec<_>>(), ["bob@example.com"]);
        let raw = String::from_utf8(msg.formatted()).unwrap();
        assert!(raw.is_ascii());
        assert!(raw.matches('\n').count() == raw.matches("\r\n").count(), "CRLF line ends only");
        let headers = raw.split("\r\n\r\n").next().unwrap();
        assert!(headers.contains("From: =?utf-8?b?") && headers.contains("<billing@shop.test>"), "{headers}");
        assert!(headers.contains("To: bob@example.com"), "{headers}");
        assert!(headers.contains("Subject: Invoice INV-0001 from =?utf-8?b?"), "{headers}");
        assert!(headers.contains("Date: Thu, 26 Nov 2026 08:00:00 +0000"), "{headers}");
        assert!(headers.contains("Message-ID: <invoice-abc-1@shop.test>"), "{headers}");
        assert!(headers.contains("MIME-Version: 1.0"), "{headers}");
        assert!(headers.contains("Auto-Submitted: auto-generated"), "{headers}");
        assert!(headers.contains("Content-Type: multipart/mixed"), "{headers}");
        // the display name and the subject, decoded
        let words: String = headers
            .split("=?utf-8?b?")
            .skip(1)
            .filter_map(|w| w.split("?=").next())
            .map(|b| String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap())
            .collect();
        assert!(words.contains("Müller \"GmbH\"") && words.contains("Müller"), "{words}");
        assert!(headers.contains("?= GmbH - 300.00 USD"), "{headers}");
        // the text and the PDF
        assert!(raw.contains("Content-Type: text/plain; charset=utf-8"), "{raw}");
        assert!(raw.contains("Content-Disposition: attachment; filename=\"INV-0001.pdf\""), "{raw}");
        assert!(raw.contains("Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64"), "{raw}");
        assert!(raw.contains(&base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.7 fake")), "{raw}");
        let text = unfold(&raw);
        assert!(text.contains("Hello Bob,") && text.contains("https://pay.shop.test/i/abc"), "{text}");
    }

    #[test]
    fn no_header_injection_and_bad_addresses() {
        let mut m = sample();
        m.subject = "Invoice\r\nBcc: evil@x.test";
        m.from_name = "Shop\r\nBcc: evil@x.test";
        let raw = String::from_utf8(build(&m).unwrap().formatted()).unwrap();
        assert!(!raw.contains("\r\nBcc:") && !raw.contains("\nBcc:"), "{raw}");
        m = sample();
        m.attachment = None;
        let raw = String::from_utf8(build(&m).unwrap().formatted()).unwrap();
        assert!(raw.contains("Content-Type: text/plain; charset=utf-8") && !raw.contains("multipart"), "{raw}");
        for (from, to) in [("billing@shop.test", "bob"), ("nobody", "bob@example.com"), ("a@shop.test", "b@example.com>\r\nRCPT TO:<evil@x.test")] {
            m.from_address = from;
            m.to = to;
            let e = build(&m).unwrap_err();
            assert!(e.permanent && e.message.contains("not a mailbox"), "{e:?}");
        }
    }

    #[test]
    fn mailbox_check() {
        assert!(valid_address("bob@example.com"));
        for bad in ["bob", "@example.com", "bob@", "bob@localhost", "a b@x.test", "a@b@x.test", "a<@x.test"] {
            assert!(!valid_address(bad), "{bad}");
        }
    }
}
