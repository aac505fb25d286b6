//! Text from the file, made safe to print. Diagnostics quote the file's keys
//! and values; an escape sequence or a carriage return in a value would
//! otherwise reach the terminal raw and could repaint or hide what `check`
//! prints. Every control character, and the invisible bidirectional
//! overrides, are shown escaped the way Rust writes them (`\u{1b}`, `\r`).

use std::borrow::Cow;

/// `text` with control and bidi-override characters escaped.
pub fn controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::controls;

    #[test]
    fn controls_are_escaped_and_the_rest_kept() {
        assert_eq!(controls("10.0.0.1 é"), "10.0.0.1 é");
        assert_eq!(controls("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(controls("x\ry\nz\t"), "x\\ry\\nz\\t");
        assert_eq!(controls("\u{202e}gnp.exe"), "\\u{202e}gnp.exe");
    }
}
