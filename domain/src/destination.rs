//! Outbound destinations: where a merchant's webhook endpoints and invoice callbacks may point.
//!
//! The worker posts to URLs that merchants choose. Pointed at the machine itself, the local
//! network or a cloud's metadata service (169.254.169.254), it would read internal services for
//! them. So a URL is refused when it is registered if its host is such an address, or a name
//! that only resolves inside a network (`localhost`, `*.internal`, a name without a dot); and the
//! worker checks again every address the host resolves to, just before it connects (which also
//! defeats DNS rebinding). `invoices.allow_private_destinations` lifts both checks, for local
//! development and tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of non-public address `ip` is, or None for a public one.
pub fn private_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => private_v6(v6),
    }
}

fn private_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified (0.0.0.0/8)",
        (127, _, _) => "loopback (127.0.0.0/8)",
        (10, _, _) => "private (10.0.0.0/8)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (169, 254, _) => "link-local (169.254.0.0/16)",
        (100, 64..=127, _) => "carrier-grade NAT (100.64.0.0/10)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, _, _) => "multicast (224.0.0.0/4)",
        (240..=255, _, _) => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn private_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    // addresses that carry an IPv4 address: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
    // NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::)
    let s = ip.segments();
    let embedded = match s {
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0, 0, ..] | [0x64, 0xff9b, 0, 0, 0, 0, ..] => {
            Some(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8))
        }
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    };
    if let Some(v4) = embedded {
        return private_v4(v4);
    }
    Some(match s[0] {
        0xfc00..=0xfdff => "unique local (fc00::/7)",
        0xfe80..=0xfebf => "link-local (fe80::/10)",
        0xfec0..=0xfeff => "site-local (fec0::/10)",
        0xff00..=0xffff => "multicast (ff00::/8)",
        _ => return None,
    })
}

/// Names that resolve only inside a network: localhost and its subdomains, the special-use
/// and private-use suffixes, and names without a dot (resolved through the search domains).
fn private_name(host: &str) -> Option<&'static str> {
    let host = host.trim_end_matches('.');
    if host == "localhost" || host.ends_with(".localhost") {
        return Some("localhost");
    }
    for suffix in [".local", ".internal", ".localdomain", ".home.arpa", ".lan", ".intranet", ".corp"] {
        if host.ends_with(suffix) {
            return Some("a name of a private network");
        }
    }
    if !host.contains('.') {
        return Some("a name without a dot (resolved inside the local network)");
    }
    None
}

/// Why `url` may not be registered as a webhook endpoint or callback, or None. With
/// `allow_private`, only the form is checked.
pub fn url_problem(url: &str, allow_private: bool) -> Option<String> {
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must be an absolute http:// or https:// URL".into());
    }
    let Ok(parsed) = url::Url::parse(url) else {
        return Some("must be an absolute http:// or https:// URL".into());
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return Some("must be an absolute http:// or https:// URL".into());
    }
    let class = match parsed.host() {
        None => return Some("must be an absolute http:// or https:// URL".into()),
        Some(url::Host::Ipv4(ip)) => private_v4(ip),
        Some(url::Host::Ipv6(ip)) => private_v6(ip),
        Some(url::Host::Domain(name)) => private_name(name),
    };
    match class {
        Some(class) if !allow_private => Some(format!(
            "must point to a public address, not {class}: the worker would send to it from inside the operator's network"
        )),
        _ => None,
    }
}

/// The worker's check just before it connects: every address the host resolved to must be
/// public. Err names the first that is not.
pub fn check_resolved(host: &str, addrs: &[IpAddr], allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    match addrs.iter().find_map(|a| private_class(*a).map(|c| (a, c))) {
        Some((addr, class)) => Err(format!(
            "refused: {host} resolves to {addr}, {class} (set invoices.allow_private_destinations for local development)"
        )),
        None => Ok(()),
    }
}

/// What of a node's URL may be shown: scheme, host and port. Hosted nodes carry their API key
/// in the path, the query or the user info (`…/v3/<key>`, `?apikey=`, `user:pass@`).
pub fn url_origin(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            _ => format!("{}://", u.scheme()),
        },
        Err(_) => "(unreadable URL)".into(),
    }
}

/// `text` with every URL in it cut down to its origin (`url_origin`), for errors that are
/// stored or shown: a node's error can repeat the whole URL, key included.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let scheme_start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+.-".contains(c)))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || "\"'<>`,)]}".contains(c))
            .map_or(rest.len(), |i| at + i);
        // punctuation that ends a sentence is not part of the URL
        let end = scheme_start + rest[scheme_start..end].trim_end_matches(['.', ':', ';', '!', '?']).len().max(at + 3 - scheme_start);
        out.push_str(&rest[..scheme_start]);
        out.push_str(&url_origin(&rest[scheme_start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused_at_registration() {
        for u in [
            "http://127.0.0.1/hook",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://0.0.0.0:8080/",
            "http://0/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://100.127.255.254/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://%6c%6fcalhost/",
            "http://metadata.google.internal/",
            "http://printer.local/",
            "http://intranet/",
            "https://user:pass@127.0.0.1/",
        ] {
            let problem = url_problem(u, false);
            assert!(problem.as_deref().is_some_and(|p| p.contains("public address")), "{u}: {problem:?}");
            assert_eq!(url_problem(u, true), None, "{u} with allow_private");
        }
    }

    #[test]
    fn public_addresses_and_names_are_accepted_even_when_they_do_not_resolve_yet() {
        for u in [
            "https://example.com/hook",
            "https://hooks.not-yet-registered-name.example/x?y=1",
            "http://8.8.8.8/",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://[2001:4860:4860::8888]/",
            "https://EXAMPLE.COM:8443/a",
        ] {
            assert_eq!(url_problem(u, false), None, "{u}");
        }
    }

    #[test]
    fn only_absolute_http_urls_are_urls() {
        for u in ["ftp://example.com/", "file:///etc/passwd", "gopher://example.com/", "example.com", "http://", "http:// x.com/", ""] {
            assert!(url_problem(u, true).is_some_and(|p| p.contains("absolute")), "{u}");
        }
    }

    #[test]
    fn every_resolved_address_is_checked() {
        let public: IpAddr = "93.184.215.14".parse().unwrap();
        let metadata: IpAddr = "169.254.169.254".parse().unwrap();
        assert_eq!(check_resolved("x.example", &[public], false), Ok(()));
        let refused = check_resolved("rebind.example", &[public, metadata], false).unwrap_err();
        assert!(refused.contains("169.254.169.254") && refused.contains("link-local"), "{refused}");
        assert_eq!(check_resolved("x.example", &[metadata], true), Ok(()));
        assert!(check_resolved("x", &["::ffff:10.0.0.1".parse().unwrap()], false).is_err());
    }

    #[test]
    fn node_urls_show_scheme_host_and_port_only() {
        assert_eq!(url_origin("https://eth-mainnet.example.com/v3/0123456789abcdef"), "https://eth-mainnet.example.com");
        assert_eq!(url_origin("http://user:secret@127.0.0.1:18443/wallet?apikey=k"), "http://127.0.0.1:18443");
        assert_eq!(url_origin("ws://127.0.0.1:18610"), "ws://127.0.0.1:18610");
        assert_eq!(url_origin("not a url"), "(unreadable URL)");
    }

    #[test]
    fn errors_lose_the_secret_parts_of_every_url() {
        let e = "http error: GET https://node.example.com/v3/SECRETKEY?apikey=SECRET2 failed (see http://u:SECRET3@h:1/x)";
        let r = redact_urls(e);
        assert!(!r.contains("SECRET"), "{r}");
        assert_eq!(r, "http error: GET https://node.example.com failed (see http://h:1)");
        assert_eq!(redact_urls("no url here"), "no url here");
        assert_eq!(redact_urls("POST http://h:1/k?x=SECRET: 401."), "POST http://h:1: 401.");
        assert_eq!(redact_urls("\"wss://k.example/abc\""), "\"wss://k.example\"");
    }
}
