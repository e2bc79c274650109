//! Human-facing identifiers: per-merchant invoice numbers and random public slugs.

use rand::Rng;

/// `INV` + 1 → `INV-0001`; numbers past 9999 simply grow (`INV-12345`).
pub fn format_invoice_number(prefix: &str, n: i64) -> String {
    format!("{prefix}-{n:04}")
}

/// Alphabet of slugs: lowercase letters and digits without look-alikes (no 0/o, 1/l/i).
const SLUG_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";

/// A random URL slug of `len` characters (16 → ~79 bits, unguessable and collision-free in
/// practice; the database still enforces uniqueness).
pub fn new_slug(len: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| SLUG_ALPHABET[rng.gen_range(0..SLUG_ALPHABET.len())] as char)
        .collect()
}

/// A slug derived from a title: `"Donate to the Project!"` → `donate-to-the-project`.
pub fn slugify(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars().flat_map(|c| c.to_lowercase()) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 48 {
            break;
        }
    }
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_zero_padded_to_four_digits() {
        assert_eq!(format_invoice_number("INV", 1), "INV-0001");
        assert_eq!(format_invoice_number("ACME", 42), "ACME-0042");
        assert_eq!(format_invoice_number("INV", 12345), "INV-12345");
    }

    #[test]
    fn slugs_are_random_and_url_safe() {
        let a = new_slug(16);
        let b = new_slug(16);
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| SLUG_ALPHABET.contains(&c)));
    }

    #[test]
    fn slugify_titles() {
        assert_eq!(slugify("Donate to the Project!"), "donate-to-the-project");
        assert_eq!(slugify("  --Hello,  World-- "), "hello-world");
    }
}
