//! QR codes as a module matrix, drawn by the PDF (rectangles) and the page (inline SVG).

use qrcode::{Color, EcLevel, QrCode};

/// A square matrix of dark (true) and light modules, without the quiet zone.
pub struct Matrix {
    pub width: usize,
    pub dark: Vec<bool>,
}

impl Matrix {
    pub fn is_dark(&self, x: usize, y: usize) -> bool {
        self.dark[y * self.width + x]
    }

    /// Dark runs per row: (x, y, length), so a renderer draws few shapes.
    pub fn runs(&self) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        for y in 0..self.width {
            let mut x = 0;
            while x < self.width {
                if self.is_dark(x, y) {
                    let start = x;
                    while x < self.width && self.is_dark(x, y) {
                        x += 1;
                    }
                    out.push((start, y, x - start));
                } else {
                    x += 1;
                }
            }
        }
        out
    }
}

/// Encodes `text` at error-correction level M; `None` if it does not fit in a QR code.
pub fn encode(text: &str) -> Option<Matrix> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).ok()?;
    let width = code.width();
    let dark = code.to_colors().into_iter().map(|c| c == Color::Dark).collect();
    Some(Matrix { width, dark })
}

/// An inline SVG (no external resources), with a 4-module quiet zone.
pub fn svg(text: &str, size_px: u32) -> Option<String> {
    let m = encode(text)?;
    let total = m.width + 8;
    let mut path = String::new();
    for (x, y, len) in m.runs() {
        path.push_str(&format!("M{} {}h{}v1h-{}z", x + 4, y + 4, len, len));
    }
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"QR code\" width=\"{size_px}\" height=\"{size_px}\" viewBox=\"0 0 {total} {total}\" shape-rendering=\"crispEdges\"><rect width=\"{total}\" height=\"{total}\" fill=\"#fff\"/><path fill=\"#000\" d=\"{path}\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_payment_uri() {
        let m = encode("bitcoin:bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq?amount=0.0015").unwrap();
        assert!(m.width >= 21 && m.width % 4 == 1);
        // finder pattern: the top-left corner is dark
        assert!(m.is_dark(0, 0) && m.is_dark(6, 0) && !m.is_dark(7, 0));
        let dark: usize = m.runs().iter().map(|r| r.2).sum();
        assert_eq!(dark, m.dark.iter().filter(|d| **d).count());
        let s = svg("kaspa:qq", 200).unwrap();
        assert!(s.starts_with("<svg") && !s.contains("http://") || s.contains("xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(encode(&"x".repeat(5000)).is_none());
    }
}
