//! Turning device bytes into text that is safe to store and to show.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Runs of binary bytes longer than this become one marker.
const COMPACT_AFTER: usize = 8;

/// Decodes bytes as UTF-8, so nothing a device sent is dropped silently: each
/// invalid byte is written `\xNN`, and a run of more than 8 binary bytes (invalid
/// UTF-8, and control characters other than tab, CR, LF and ESC, which text and
/// colour codes use) becomes one marker `\[N binary bytes]`, so 50 MiB of 0xFF
/// is a line of 25 characters, not 200 MiB of escapes. Other control characters
/// are kept: JSON output carries the exact text, and [`for_terminal`] escapes
/// them before they reach a terminal.
pub fn from_device(bytes: &[u8]) -> String {
    if let Some(text) = plain(bytes) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(bytes.len().min(64 * 1024));
    let mut run = BinaryRun::default();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if is_binary(c) {
                run.push(c.len_utf8(), |shown| shown.push(c));
            } else {
                run.end(&mut out);
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            run.push(1, |shown| {
                let _ = write!(shown, "\\x{b:02x}");
            });
        }
    }
    run.end(&mut out);
    out
}

/// The bytes as text when [`from_device`] keeps them as they are: valid UTF-8
/// with no binary byte (those are all ASCII, so a byte test is exact). The
/// common case, checked at memory speed and without an allocation.
pub fn plain(bytes: &[u8]) -> Option<&str> {
    // Without an early exit, so the compiler can test many bytes at once.
    let binary = bytes.iter().fold(false, |seen, &b| seen | is_binary_byte(b));
    if binary {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

/// Only printable ASCII (space to `~`): nothing to escape anywhere. Without
/// an early exit, so the compiler tests many bytes at once.
pub fn printable_ascii(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |all, &b| all & (0x20..0x7f).contains(&b))
}

/// The bytes as text when they are printable ASCII: the commonest case of all
/// (log lines), decided in one vectorised pass with nothing to decode.
pub fn printable(bytes: &[u8]) -> Option<&str> {
    if !printable_ascii(bytes) {
        return None;
    }
    // SAFETY: every byte is ASCII (0x20..0x7f), and ASCII is valid UTF-8.
    Some(unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// [`is_binary`] for one byte, as a bit test.
fn is_binary_byte(b: u8) -> bool {
    // Control bytes that text keeps: tab, LF, CR and ESC.
    const KEPT: u32 = 1 << b'\t' | 1 << b'\n' | 1 << b'\r' | 1 << 0x1b;
    b < 0x20 && (KEPT >> (b & 31)) & 1 == 0
}

/// Binary bytes seen in a row: shown as they are while the run is short, as one
/// marker once it is long (then nothing more of it is held).
#[derive(Default)]
struct BinaryRun {
    bytes: usize,
    shown: String,
}

impl BinaryRun {
    fn push(&mut self, len: usize, show: impl FnOnce(&mut String)) {
        self.bytes += len;
        if self.bytes <= COMPACT_AFTER {
            show(&mut self.shown);
        } else {
            self.shown.clear();
        }
    }

    fn end(&mut self, out: &mut String) {
        if self.bytes > COMPACT_AFTER {
            let _ = write!(out, "\\[{} binary bytes]", self.bytes);
        } else {
            out.push_str(&self.shown);
        }
        self.bytes = 0;
        self.shown.clear();
    }
}

fn is_binary(c: char) -> bool {
    (c as u32) < 0x20 && !matches!(c, '\t' | '\r' | '\n' | '\u{1b}')
}

/// Escapes every control character (C0, DEL, C1) and the Unicode bidi controls, so
/// no escape sequence or reordering from a device ever reaches the operator's terminal.
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    // Printable ASCII needs nothing (the bidi controls are not ASCII): a byte test.
    if printable_ascii(text.as_bytes()) || !text.chars().any(needs_escape) {
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

/// A size as people read it, the same everywhere (screen, stdout, replies):
/// binary units with two decimals (`12.05 KiB`, `1.17 MiB`, `0 B`).
pub fn size(bytes: u64) -> String {
    humansize::format_size(bytes, humansize::BINARY)
}

/// Cuts text into pieces of at most `max_bytes` (at least one character each),
/// never inside a character.
/// A delay as people say it: `800 ms`, `2 s`, `1.5 s`, `30 s`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

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
    fn the_byte_test_agrees_with_the_character_test() {
        for b in 0..=255u8 {
            assert_eq!(is_binary_byte(b), is_binary(b as char), "byte {b:#04x}");
        }
        assert_eq!(plain(b"ok\t\x1b[1m"), Some("ok\t\x1b[1m"));
        assert_eq!(plain(b"ok\x00"), None);
        assert_eq!(printable(b"temp=21.5 ~"), Some("temp=21.5 ~"));
        for b in (0..0x20).chain(0x7f..=0xff) {
            assert_eq!(printable(&[b'a', b]), None, "byte {b:#04x}");
        }
        assert_eq!(plain(b"ok\xff"), None);
    }

    #[test]
    fn invalid_utf8_is_escaped_not_dropped() {
        assert_eq!(from_device(b"ok\xff\xfe!"), "ok\\xff\\xfe!");
        assert_eq!(from_device("héllo".as_bytes()), "héllo");
    }

    #[test]
    fn long_binary_runs_become_one_marker() {
        let mut bytes = b"start ".to_vec();
        bytes.extend(std::iter::repeat_n(0xffu8, 50_000));
        bytes.extend(b" mid \x00\x01\xfe end");
        bytes.extend(std::iter::repeat_n(0u8, 9));
        assert_eq!(
            from_device(&bytes),
            "start \\[50000 binary bytes] mid \u{0}\u{1}\\xfe end\\[9 binary bytes]"
        );
        // Eight in a row stay as they are; colour codes and tabs are text.
        assert_eq!(from_device(&[0xff; 8]), "\\xff".repeat(8));
        assert_eq!(
            from_device(b"\x1b[31mred\x1b[0m\tok"),
            "\u{1b}[31mred\u{1b}[0m\tok"
        );
        // Binary mixed of invalid bytes and control characters is one run.
        assert_eq!(
            from_device(b"a\x00\xff\x00\xff\x00\xff\x00\xff\x00b"),
            "a\\[9 binary bytes]b"
        );
    }

    proptest::proptest! {
        #[test]
        fn escaping_is_bounded_and_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
            let text = from_device(&bytes);
            proptest::prop_assert!(text.len() <= 4 * bytes.len() + 32);
        }
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
