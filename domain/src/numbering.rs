//! Human-facing identifiers: per-merchant invoice numbers and random public slugs.

use rand::RngCore;

/// `INV` + 1 → `INV-0001`; numbers past 9999 simply grow (`INV-12345`).
pub fn format_invoice_number(prefix: &str, n: i64) -> String {
    format!("{prefix}-{n:04}")
}

/// Alphabet of slugs: lowercase letters and digits without look-alikes (no 0/o, 1/l/i).
const SLUG_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";

/// A random URL slug of `len` characters (16 → ~79 bits, unguessable and collision-free in
/// practice; the database still enforces uniqueness). One read of the OS generator serves the
/// whole slug (a read per character cost more than the rest of it); bytes from 248 up (= 8 ×
/// 31) are drawn again, so every character is equally likely.
pub fn new_slug(len: usize) -> String {
    let n = SLUG_ALPHABET.len();
    let limit = 256 - 256 % n;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 32];
    while out.len() < len {
        rand::rngs::OsRng.fill_bytes(&mut buf);
        for &b in buf.iter().filter(|&&b| (b as usize) < limit) {
            if out.len() == len {
                break;
            }
            out.push(SLUG_ALPHABET[b as usize % n] as char);
        }
    }
    out
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
    fn long_slugs_draw_again_and_use_the_whole_alphabet() {
        let s = new_slug(2000);
        assert_eq!(s.len(), 2000);
        assert!(SLUG_ALPHABET.iter().all(|c| s.as_bytes().contains(c)));
    }

    #[test]
    fn slugify_titles() {
        assert_eq!(slugify("Donate to the Project!"), "donate-to-the-project");
        assert_eq!(slugify("  --Hello,  World-- "), "hello-world");
    }
}
