//! Turning device bytes into text that is safe to store and to show.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Decodes bytes as UTF-8, writing each invalid byte as `\xNN` so nothing a device
/// sent is dropped silently. Control characters are kept: JSON output carries the
/// exact text, and [`for_terminal`] escapes them before they reach a terminal.
pub fn from_device(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Escapes every control character (C0, DEL, C1) and the Unicode bidi controls, so
/// no escape sequence or reordering from a device ever reaches the operator's terminal.
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
            continue;
        }
        match c {
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// Control characters and bidi controls: never shown raw, never in a file name.
pub fn is_unsafe_for_terminal(c: char) -> bool {
    needs_escape(c)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
        )
}

/// Cuts text into pieces of at most `max_bytes` (at least one character each),
/// never inside a character.
pub fn pieces(text: &str, max_bytes: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = max_bytes.max(1).min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (piece, tail) = rest.split_at(cut);
        out.push(piece);
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_escaped_not_dropped() {
        assert_eq!(from_device(b"ok\xff\xfe!"), "ok\\xff\\xfe!");
        assert_eq!(from_device("héllo".as_bytes()), "héllo");
    }

    #[test]
    fn pieces_never_split_a_character() {
        assert_eq!(pieces("ééééé", 5), ["éé", "éé", "é"]);
        assert_eq!(pieces("abc", 1), ["a", "b", "c"]);
        assert_eq!(pieces("€", 1), ["€"]);
        assert!(pieces("", 4).is_empty());
    }

    #[test]
    fn terminal_text_has_no_control_characters() {
        let hostile = from_device(b"\x1b]0;pwned\x07\x1b[2J\x9b\r\nend\xc2\x9b");
        let shown = for_terminal(&hostile);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown}");
        assert_eq!(for_terminal("\u{1b}[31m"), "\\x1b[31m");
        assert_eq!(for_terminal("a\u{202e}b"), "a\\u{202e}b");
        assert!(matches!(for_terminal("plain"), Cow::Borrowed(_)));
    }
}
