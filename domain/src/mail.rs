//! Invoice e-mail: the message (RFC 5322 + MIME, the PDF attached) and a small SMTP client
//! (RFC 5321: EHLO, AUTH PLAIN, MAIL, RCPT, DATA) over any byte stream, so the dialogue is
//! tested against canned servers here and spoken to a real relay by the worker.

use base64::Engine;
use std::io::{BufRead, BufReader, Read, Write};

/// `smtp://[user[:password]@]host[:port]` (port 25 by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl SmtpUrl {
    pub fn parse(url: &str) -> Result<SmtpUrl, String> {
        let rest = url
            .strip_prefix("smtp://")
            .ok_or_else(|| "invoices.smtp_url must look like smtp://[user:password@]host:port".to_string())?;
        let rest = rest.trim_end_matches('/');
        let (creds, hostport) = match rest.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, rest),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("bad SMTP port {p:?}"))?),
            None => (hostport, 25),
        };
        if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
            return Err(format!("bad SMTP host {host:?}"));
        }
        let (user, password) = match creds {
            Some(c) => match c.split_once(':') {
                Some((u, p)) => (Some(percent_decode(u)), Some(percent_decode(p))),
                None => (Some(percent_decode(c)), None),
            },
            None => (None, None),
        };
        Ok(SmtpUrl { host: host.to_string(), port, user, password })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A mailbox the relay is given: the one e-mail check of the project (`validate::is_email`).
pub fn valid_address(addr: &str) -> bool {
    crate::validate::is_email(addr)
}

/// What one e-mail says.
pub struct Message<'a> {
    pub from_name: &'a str,
    pub from_address: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub attachment: Option<(&'a str, &'a str, &'a [u8])>, // file name, media type, bytes
    pub message_id: &'a str,
    /// Seconds since the Unix epoch (the Date header).
    pub date_unix: i64,
}

/// A header value: ASCII as is, anything else as RFC 2047 encoded words; never a line break.
pub fn header_text(s: &str) -> String {
    let clean: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.is_ascii() {
        return clean;
    }
    // encoded words of at most ~45 input bytes each, split on char boundaries
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in clean.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| format!("=?UTF-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(w.as_bytes())))
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// RFC 5322 date of a Unix time, in UTC: "Thu, 26 Nov 2026 08:00:00 +0000".
pub fn rfc5322_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // civil date from days since 1970-01-01 (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        months[(month - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn base64_lines(bytes: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(b64.len() + b64.len() / 76 * 2 + 2);
    for chunk in b64.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push_str("\r\n");
    }
    out
}

/// The whole message, CRLF line ends, ready for DATA.
pub fn compose(m: &Message) -> String {
    let boundary = format!("=_invoice_{}", m.message_id.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>());
    let from_name = m.from_name.replace('"', "'");
    let mut out = String::new();
    out.push_str(&format!("From: \"{}\" <{}>\r\n", header_text(&from_name), m.from_address));
    out.push_str(&format!("To: <{}>\r\n", m.to));
    out.push_str(&format!("Subject: {}\r\n", header_text(m.subject)));
    out.push_str(&format!("Date: {}\r\n", rfc5322_date(m.date_unix)));
    out.push_str(&format!("Message-ID: <{}>\r\n", m.message_id));
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str("Auto-Submitted: auto-generated\r\n");
    let text_part = format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
        base64_lines(m.text.replace("\r\n", "\n").replace('\n', "\r\n").as_bytes())
    );
    match m.attachment {
        None => out.push_str(&text_part),
        Some((name, media, bytes)) => {
            let name = name.replace(['"', '\r', '\n', '\\'], "_");
            out.push_str(&format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"));
            out.push_str("This is a multi-part message in MIME format.\r\n");
            out.push_str(&format!("--{boundary}\r\n{text_part}"));
            out.push_str(&format!(
                "--{boundary}\r\nContent-Type: {media}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                base64_lines(bytes)
            ));
            out.push_str(&format!("--{boundary}--\r\n"));
        }
    }
    out
}

/// Why a send failed; `permanent` when the relay refused for good (5xx), so retrying is useless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpError {
    pub permanent: bool,
    pub message: String,
}

impl SmtpError {
    fn io(e: std::io::Error, during: &str) -> SmtpError {
        SmtpError { permanent: false, message: format!("{during}: {e}") }
    }
}

struct Conn<S: Read + Write> {
    reader: BufReader<S>,
}

impl<S: Read + Write> Conn<S> {
    /// One reply, possibly multi-line ("250-…" then "250 …"): (code, text).
    fn reply(&mut self, during: &str) -> Result<(u16, String), SmtpError> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.by_ref().take(4096).read_line(&mut line).map_err(|e| SmtpError::io(e, during))?;
            if n == 0 {
                return Err(SmtpError { permanent: false, message: format!("{during}: the relay closed the connection") });
            }
            let line = line.trim_end();
            let code = line.get(..3).and_then(|c| c.parse::<u16>().ok()).ok_or_else(|| SmtpError {
                permanent: false,
                message: format!("{during}: not an SMTP reply: {:?}", line.chars().take(80).collect::<String>()),
            })?;
            text.push_str(line.get(4..).unwrap_or(""));
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, text));
            }
            text.push(' ');
        }
    }

    fn command(&mut self, cmd: &str, during: &str) -> Result<(u16, String), SmtpError> {
        let w = self.reader.get_mut();
        w.write_all(cmd.as_bytes()).and_then(|_| w.write_all(b"\r\n")).and_then(|_| w.flush()).map_err(|e| SmtpError::io(e, during))?;
        self.reply(during)
    }

    fn expect(&mut self, cmd: &str, during: &str, ok: &[u16]) -> Result<String, SmtpError> {
        let (code, text) = self.command(cmd, during)?;
        if ok.contains(&code) {
            Ok(text)
        } else {
            Err(SmtpError { permanent: (500..600).contains(&code), message: format!("{during}: {code} {text}") })
        }
    }
}

/// Sends one message over `stream` (already connected): the whole dialogue, QUIT included.
/// Returns the relay's answer to the message (usually its queue id).
pub fn send<S: Read + Write>(
    stream: S,
    helo: &str,
    auth: Option<(&str, &str)>,
    from: &str,
    to: &str,
    data: &str,
) -> Result<String, SmtpError> {
    for addr in [from, to] {
        if !valid_address(addr) {
            return Err(SmtpError { permanent: true, message: format!("not a mailbox: {addr:?}") });
        }
    }
    let mut c = Conn { reader: BufReader::new(stream) };
    let (code, text) = c.reply("greeting")?;
    if code != 220 {
        return Err(SmtpError { permanent: (500..600).contains(&code), message: format!("greeting: {code} {text}") });
    }
    let ehlo = c.command(&format!("EHLO {helo}"), "EHLO")?;
    if ehlo.0 != 250 {
        c.expect(&format!("HELO {helo}"), "HELO", &[250])?;
    }
    if let Some((user, password)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        c.expect(&format!("AUTH PLAIN {token}"), "AUTH", &[235])?;
    }
    c.expect(&format!("MAIL FROM:<{from}>"), "MAIL FROM", &[250])?;
    c.expect(&format!("RCPT TO:<{to}>"), "RCPT TO", &[250, 251])?;
    c.expect("DATA", "DATA", &[354])?;
    // dot-stuffing: a line starting with "." gets another one
    let mut body = String::with_capacity(data.len() + 16);
    for line in data.split("\r\n") {
        if line.starts_with('.') {
            body.push('.');
        }
        body.push_str(line);
        body.push_str("\r\n");
    }
    if body.ends_with("\r\n\r\n") {
        body.truncate(body.len() - 2);
    }
    body.push('.');
    let accepted = c.expect(&body, "message", &[250])?;
    let _ = c.command("QUIT", "QUIT");
    Ok(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A canned relay: reads whatever we write, answers from a script.
    struct Canned {
        answers: Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Read for Canned {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.answers.read(buf)
        }
    }
    impl Write for Canned {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn canned(script: &str) -> Canned {
        Canned { answers: Cursor::new(script.replace('\n', "\r\n").into_bytes()), written: Vec::new() }
    }

    #[test]
    fn parses_relay_urls() {
        assert_eq!(
            SmtpUrl::parse("smtp://mailer:s%40cret@127.0.0.1:2525").unwrap(),
            SmtpUrl { host: "127.0.0.1".into(), port: 2525, user: Some("mailer".into()), password: Some("s@cret".into()) }
        );
        assert_eq!(SmtpUrl::parse("smtp://relay.local").unwrap().port, 25);
        assert!(SmtpUrl::parse("http://x").is_err());
        assert!(SmtpUrl::parse("smtp://host:99999").is_err());
        assert!(SmtpUrl::parse("smtp://").is_err());
    }

    #[test]
    fn composes_a_mime_message() {
        let m = Message {
            from_name: "Müller \"GmbH\"",
            from_address: "billing@shop.test",
            to: "bob@example.com",
            subject: "Invoice INV-0001 from Müller GmbH",
            text: "Hello\n.hidden dot\nPay here: https://x/i/abc",
            attachment: Some(("INV-0001.pdf", "application/pdf", b"%PDF-1.7 fake")),
            message_id: "inv-1.2@shop.test",
            date_unix: 1_795_680_000,
        };
        let msg = compose(&m);
        assert!(msg.contains("From: \"=?UTF-8?B?"));
        assert!(msg.contains("To: <bob@example.com>\r\n"));
        assert!(msg.contains("Subject: =?UTF-8?B?"));
        assert!(msg.contains("Content-Type: multipart/mixed; boundary="));
        assert!(msg.contains("Content-Type: application/pdf; name=\"INV-0001.pdf\""));
        assert!(msg.contains(&base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.7 fake")));
        assert!(!msg.contains('\n') || msg.matches('\n').count() == msg.matches("\r\n").count());
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(1_795_680_000), "Thu, 26 Nov 2026 08:00:00 +0000");
        // no header injection through the subject
        assert!(!header_text("a\r\nBcc: evil@x").contains('\n'));
    }

    #[test]
    fn speaks_smtp() {
        let mut relay = canned("220 relay ESMTP\n250-relay\n250-AUTH PLAIN\n250 8BITMIME\n235 ok\n250 ok\n250 ok\n354 go\n250 queued as 42\n221 bye\n");
        let accepted = send(&mut relay, "invoices", Some(("u", "p")), "a@shop.test", "bob@example.com", "Subject: x\r\n\r\n.line\r\nend\r\n").unwrap();
        assert_eq!(accepted, "queued as 42");
        let written = String::from_utf8(relay.written).unwrap();
        assert!(written.starts_with("EHLO invoices\r\nAUTH PLAIN AHUAcA==\r\nMAIL FROM:<a@shop.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"));
        assert!(written.contains("\r\n..line\r\nend\r\n.\r\nQUIT\r\n"));
    }

    #[test]
    fn refusals_are_temporary_or_permanent() {
        let mut busy = canned("220 relay\n250 relay\n451 try again later\n");
        let e = send(&mut busy, "h", None, "a@shop.test", "bob@example.com", "x").unwrap_err();
        assert!(!e.permanent && e.message.contains("451"));
        let mut unknown = canned("220 relay\n250 relay\n250 ok\n550 no such user\n");
        let e = send(&mut unknown, "h", None, "a@shop.test", "nobody@example.com", "x").unwrap_err();
        assert!(e.permanent && e.message.contains("RCPT TO: 550"));
        let mut garbage = canned("HTTP/1.1 400 Bad Request\n");
        assert!(!send(&mut garbage, "h", None, "a@shop.test", "b@example.com", "x").unwrap_err().permanent);
        let mut closed = canned("");
        assert!(send(&mut closed, "h", None, "a@shop.test", "b@example.com", "x").unwrap_err().message.contains("closed"));
        let mut any = canned("220 x\n");
        assert!(send(&mut any, "h", None, "a@shop.test", "b@example.com>\r\nRCPT TO:<evil@x.test", "x").unwrap_err().permanent);
    }

    #[test]
    fn mailbox_check() {
        assert!(valid_address("bob@example.com"));
        for bad in ["bob", "@example.com", "bob@", "bob@localhost", "a b@x.test", "a@b@x.test", "a<@x.test"] {
            assert!(!valid_address(bad), "{bad}");
        }
    }
}
