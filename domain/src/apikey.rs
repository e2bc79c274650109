//! API keys: issued once, stored as a SHA-256 hash, accepted in two headers.
//!
//! A key is a JSON Web Token (HS256) signed with the secret PostgREST verifies bearer tokens
//! with. That makes one key work both ways: as `Authorization: Bearer <key>` PostgREST checks
//! the signature and runs the request as the key's role; as `X-API-Key: <key>` it passes through
//! untouched. Either way the pre-request check hashes the key and looks the hash up, so a revoked
//! key stops working on the next request even though its signature stays valid.

use crate::error::{DomainError, ErrorKind, FieldErrors};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The scopes a key can hold, in the order they are listed.
pub const SCOPES: [&str; 4] = ["read", "write", "webhooks", "admin"];

/// A freshly issued key: `key` is shown to the caller once; only `hash` is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedKey {
    pub key: String,
    /// Public identifier (`inv_` + 12 hex digits), carried inside the key and shown in listings.
    pub prefix: String,
    /// Lowercase hex SHA-256 of the whole key.
    pub hash: String,
}

/// Validates a scope list: known names only, at least one; duplicates dropped, canonical order.
pub fn parse_scopes(scopes: &[String]) -> Result<Vec<String>, DomainError> {
    let mut errors = FieldErrors::new();
    if scopes.is_empty() {
        errors.add("scopes", "must name at least one of read, write, webhooks, admin");
    }
    for (i, s) in scopes.iter().enumerate() {
        if !SCOPES.contains(&s.as_str()) {
            errors.add(
                format!("scopes[{i}]"),
                format!("unknown scope {s:?}: use read, write, webhooks or admin"),
            );
        }
    }
    errors.finish("API key")?;
    Ok(SCOPES
        .iter()
        .filter(|k| scopes.iter().any(|s| s == *k))
        .map(|s| s.to_string())
        .collect())
}

/// Validates a key's display name.
pub fn check_name(name: &str) -> Result<(), DomainError> {
    if name.trim().is_empty() || name.chars().count() > 100 {
        let mut errors = FieldErrors::new();
        errors.add("name", "must be 1 to 100 characters");
        return errors.finish("API key");
    }
    Ok(())
}

/// Issues a new key for PostgREST role `role`, signed with `secret`.
pub fn issue(secret: &str, role: &str) -> IssuedKey {
    let mut rng = rand::thread_rng();
    let mut kid = [0u8; 6];
    let mut nonce = [0u8; 32];
    rng.fill_bytes(&mut kid);
    rng.fill_bytes(&mut nonce);
    issue_with(secret, role, &format!("inv_{}", hex::encode(kid)), &URL_SAFE_NO_PAD.encode(nonce))
}

/// [`issue`] with the random parts given (tests).
pub fn issue_with(secret: &str, role: &str, prefix: &str, nonce: &str) -> IssuedKey {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({ "role": role, "kid": prefix, "jti": nonce });
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(secret.as_bytes(), signing_input.as_bytes()));
    let key = format!("{signing_input}.{signature}");
    IssuedKey {
        hash: hash(&key),
        key,
        prefix: prefix.to_string(),
    }
}

/// Lowercase hex SHA-256 of a presented key: what the `api_keys` table stores.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// True if `key` carries a valid HS256 signature by `secret` (what PostgREST checks).
pub fn signature_is_valid(secret: &str, key: &str) -> bool {
    let Some((signing_input, signature)) = key.rsplit_once('.') else {
        return false;
    };
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&signature).is_ok()
}

/// A random secret for signing keys: 48 random bytes, base64url (64 characters; PostgREST
/// wants at least 32).
pub fn new_secret() -> String {
    let mut bytes = [0u8; 48];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// The kind of error a bad key gets (HTTP 401).
pub fn invalid_key() -> DomainError {
    DomainError::new(ErrorKind::Unauthenticated, "invalid or revoked API key")
        .with_hint("send an active key as X-API-Key: <key> or Authorization: Bearer <key>")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-that-is-at-least-32-characters";

    #[test]
    fn issued_key_is_a_jwt_with_role_and_prefix() {
        let k = issue_with(SECRET, "invoices_api", "inv_0123456789ab", "nonce");
        let parts: Vec<&str> = k.key.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["role"], "invoices_api");
        assert_eq!(claims["kid"], "inv_0123456789ab");
        assert_eq!(k.prefix, "inv_0123456789ab");
        assert!(signature_is_valid(SECRET, &k.key));
        assert!(!signature_is_valid("another-secret-of-enough-length-xxxxxx", &k.key));
    }

    #[test]
    fn hash_is_hex_sha256_of_the_whole_key() {
        // sha256("abc")
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let k = issue(SECRET, "invoices_api");
        assert_eq!(k.hash, hash(&k.key));
        assert_eq!(k.hash.len(), 64);
        assert!(k.prefix.starts_with("inv_") && k.prefix.len() == 16);
    }

    #[test]
    fn two_keys_differ() {
        assert_ne!(issue(SECRET, "r").key, issue(SECRET, "r").key);
        assert_ne!(new_secret(), new_secret());
        assert_eq!(new_secret().len(), 64);
    }

    #[test]
    fn tampered_key_fails_the_signature() {
        let k = issue(SECRET, "invoices_api");
        let forged = k.key.replacen("invoices_api", "postgres", 1);
        let mut parts: Vec<String> = k.key.split('.').map(String::from).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(br#"{"role":"postgres"}"#);
        assert!(!signature_is_valid(SECRET, &parts.join(".")));
        assert!(signature_is_valid(SECRET, &forged) == (forged == k.key));
    }

    #[test]
    fn scopes_are_validated_and_canonical() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_scopes(&s(&["write", "read", "write"])).unwrap(), s(&["read", "write"]));
        let e = parse_scopes(&s(&["read", "root"])).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation);
        assert_eq!(e.fields[0].field, "scopes[1]");
        assert!(parse_scopes(&[]).is_err());
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
