//! Small validators for outside input: e-mail addresses, URLs, ISO dates, invoice prefixes.

/// A practical e-mail check (what Stripe and most forms accept): one `@`, a non-empty local part,
/// a dotted domain of letters, digits and hyphens, no spaces, at most 254 characters; no
/// RFC 5322 specials (`<>()[]\,;:"`) in the local part, so it is also a safe SMTP path.
pub fn is_email(s: &str) -> bool {
    if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    if local.is_empty()
        || local.len() > 64
        || local.contains('@')
        || local.starts_with('.')
        || local.ends_with('.')
        || local.chars().any(|c| "<>()[]\\,;:\"".contains(c))
    {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && !tld.chars().all(|c| c.is_ascii_digit()))
}

/// An absolute http(s) URL with a host, as webhook and redirect targets must be.
pub fn is_http_url(s: &str) -> bool {
    if s.len() > 2048 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let rest = if let Some(r) = s.strip_prefix("https://") {
        r
    } else if let Some(r) = s.strip_prefix("http://") {
        r
    } else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    !host.is_empty() && host != "[]"
}

/// A calendar date as `YYYY-MM-DD` → (year, month, day); rejects `infinity` and impossible days.
pub fn parse_iso_date(s: &str) -> Option<(i32, u32, u32)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i32 = s[0..4].parse().ok()?;
    let m: u32 = s[5..7].parse().ok()?;
    let d: u32 = s[8..10].parse().ok()?;
    if !(1..=12).contains(&m) || y < 1 {
        return None;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][(m - 1) as usize];
    (1..=days).contains(&d).then_some((y, m, d))
}

/// An invoice-number prefix: 1–16 letters, digits, `-` or `_`, starting with a letter or digit.
pub fn is_invoice_prefix(s: &str) -> bool {
    (1..=16).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in [
            "alice@example.com",
            "a.b+tag@sub.example.co.uk",
            "x@ex-ample.io",
        ] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "a b@example.com",
            "alice@example",
            "alice@.com",
            "a@b@c.com",
            "alice@example.c",
            "a<b@example.com",
            "bob>\r\nRCPT TO:<evil@x.test",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn urls() {
        for ok in [
            "https://example.com/hook",
            "http://127.0.0.1:8080/x?y=1",
            "https://[::1]:9/",
        ] {
            assert!(is_http_url(ok), "{ok}");
        }
        for bad in [
            "",
            "ftp://example.com",
            "https://",
            "example.com",
            "https:// x",
            "javascript:alert(1)",
        ] {
            assert!(!is_http_url(bad), "{bad}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(parse_iso_date("2026-02-28"), Some((2026, 2, 28)));
        assert_eq!(parse_iso_date("2028-02-29"), Some((2028, 2, 29)));
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-00-10",
            "26-01-01",
            "infinity",
            "2026-1-1",
        ] {
            assert_eq!(parse_iso_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn prefixes() {
        assert!(is_invoice_prefix("INV"));
        assert!(is_invoice_prefix("ACME-2026"));
        assert!(!is_invoice_prefix(""));
        assert!(!is_invoice_prefix("-INV"));
        assert!(!is_invoice_prefix("IN V"));
        assert!(!is_invoice_prefix("ABCDEFGHIJKLMNOPQ"));
    }
}
