//! Webhook signatures: a delivery carries both headers, signed with its endpoint's secret or the
//! invoice's callback_secret (a callback without a secret goes unsigned):
//! - `X-Webhook-Signature: <hex HMAC-SHA256(secret, raw body)>` — what the Living Invoices and
//!   BTPay documents verify;
//! - `Webhook-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` — replay-safe:
//!   the receiver rejects a timestamp outside its tolerance.

use crate::apikey::hmac_sha256;
use rand::RngCore;

/// Lowercase hex HMAC-SHA256 of the raw body.
pub fn body_signature(secret: &str, body: &[u8]) -> String {
    hex::encode(hmac_sha256(secret.as_bytes(), body))
}

/// The timestamped header value `t=<unix>,v1=<hex>`.
pub fn timestamped_signature(secret: &str, body: &[u8], unix: i64) -> String {
    let mut signed = format!("{unix}.").into_bytes();
    signed.extend_from_slice(body);
    format!("t={unix},v1={}", hex::encode(hmac_sha256(secret.as_bytes(), &signed)))
}

/// A new endpoint secret: `whsec_` + 32 random bytes in hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("whsec_{}", hex::encode(bytes))
}

/// Constant-time comparison of two hex strings.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a receiver runs: accepts either header form. A `t=…,v1=…` header must be within
/// `tolerance_seconds` of `now`; a bare hex signature has no timestamp to check.
pub fn verify(body: &[u8], header: &str, secret: &str, tolerance_seconds: i64, now: i64) -> bool {
    let header = header.trim();
    if header.contains("v1=") {
        let mut t: Option<i64> = None;
        let mut candidates = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", v)) => t = v.parse().ok(),
                Some(("v1", v)) => candidates.push(v.to_ascii_lowercase()),
                _ => {}
            }
        }
        let Some(t) = t else { return false };
        if (now - t).abs() > tolerance_seconds {
            return false;
        }
        let expected = timestamped_signature(secret, body, t);
        let expected = expected.split_once(",v1=").map(|(_, h)| h.to_string()).unwrap_or_default();
        return candidates.iter().any(|c| same(c, &expected));
    }
    let given = header.strip_prefix("sha256=").unwrap_or(header).to_ascii_lowercase();
    same(&given, &body_signature(secret, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_signature_is_hex_hmac_sha256() {
        // RFC 4231 test case 2
        assert_eq!(body_signature("Jefe", b"what do ya want for nothing?"),
                   "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn timestamped_signature_signs_t_dot_body() {
        let h = timestamped_signature("Jefe", b"what do ya want for nothing?", 1700000000);
        assert!(h.starts_with("t=1700000000,v1="));
        assert_eq!(h.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(&h[16..], body_signature("Jefe", b"what do ya want for nothing?"));
    }

    #[test]
    fn verify_accepts_both_forms_and_rejects_stale_or_wrong() {
        let body = br#"{"id":"e1","event":"invoice.paid"}"#;
        let s = "whsec_test";
        assert!(verify(body, &body_signature(s, body), s, 300, 1_700_000_000));
        let t = timestamped_signature(s, body, 1_700_000_000);
        assert!(verify(body, &t, s, 300, 1_700_000_100));
        assert!(!verify(body, &t, s, 300, 1_700_000_301), "stale");
        assert!(!verify(body, &t, "other", 300, 1_700_000_000));
        assert!(!verify(b"tampered", &t, s, 300, 1_700_000_000));
        assert!(!verify(body, "t=abc,v1=00", s, 300, 1_700_000_000));
        assert!(!verify(body, "", s, 300, 1_700_000_000));
    }

    #[test]
    fn secrets_are_prefixed_and_random() {
        let a = new_secret();
        assert!(a.starts_with("whsec_") && a.len() == 6 + 64);
        assert_ne!(a, new_secret());
    }
}
