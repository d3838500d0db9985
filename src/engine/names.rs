//! Names that come from the wire or the network become folder and file names only
//! through [`sanitize`], so nothing is ever written outside the received folder.

/// Longest name kept, in bytes; long enough for real names, short enough for any
/// file system with room for ` (123).part` after it.
pub const MAX_NAME_BYTES: usize = 120;

/// A safe single path component: the last component only, no control characters,
/// no separators, no `.`/`..`, no leading dots (hidden files), capped in length with
/// the extension kept. `fallback` names what would otherwise be empty.
pub fn sanitize(raw: &str, fallback: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|&c| !is_invisible(c))
        .map(|c| {
            if crate::text::is_unsafe_for_terminal(c) || matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|')
            {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned
        .trim()
        .trim_start_matches('.')
        .trim_end_matches(['.', ' ']);
    if trimmed.is_empty() {
        return fallback.to_string();
    }
    let name = cap_keeping_extension(trimmed, MAX_NAME_BYTES - 1);
    let name = not_a_windows_device(name);
    // A complete file never looks like one still being received (or its sidecar).
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".part") || lower.ends_with(".meta") {
        format!("{name}_")
    } else {
        name
    }
}

/// Characters that show as nothing (zero-width spaces and joiners, direction
/// marks, variation selectors, tags: Unicode's default-ignorable code points), so
/// `cam` and `c\u{200B}am` never pass for one name.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// Windows keeps `CON`, `PRN`, `AUX`, `NUL`, `COM0`-`COM9` and `LPT0`-`LPT9` (with
/// any extension) for devices: such a name gets `_` after its stem, so the
/// received folder can be copied to any machine.
fn not_a_windows_device(name: String) -> String {
    let (stem, rest) = match name.find('.') {
        Some(dot) => name.split_at(dot),
        None => (name.as_str(), ""),
    };
    let upper = stem.trim_end().to_ascii_uppercase();
    let reserved = matches!(upper.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (upper.len() == 4
            && (upper.starts_with("COM") || upper.starts_with("LPT"))
            && upper.as_bytes()[3].is_ascii_digit());
    if reserved { format!("{stem}_{rest}") } else { name }
}

fn cap_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && ext.len() <= 16 => (stem, ext),
        _ => (name, ""),
    };
    let room = max - if ext.is_empty() { 0 } else { ext.len() + 1 };
    let mut cut = room.min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    if ext.is_empty() {
        stem[..cut].to_string()
    } else {
        format!("{}.{ext}", &stem[..cut])
    }
}

/// Names the console writes itself: `received.jsonl` in the received folder and
/// `conversation.log` in each device's folder. No device or received file takes them.
pub const RESERVED_NAMES: &[&str] = &["received.jsonl", "conversation.log", "conversation.log.1"];

/// A device's folder name: sanitised, and never one of the console's own names.
pub fn device_folder(raw: &str) -> String {
    let name = sanitize(raw, "device");
    if RESERVED_NAMES.contains(&name.as_str()) {
        format!("{name}_")
    } else {
        name
    }
}

/// `name (n).ext` for the n-th alternative when `name.ext` is taken.
pub fn numbered(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem} ({n}).{ext}"),
        _ => format!("{name} ({n})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_names_become_one_safe_component() {
        let cases = [
            ("../../etc/passwd", "passwd"),
            ("..", "gen"),
            (".", "gen"),
            ("", "gen"),
            ("   ", "gen"),
            ("C:\\Windows\\system.ini", "system.ini"),
            ("a/b/", "gen"),
            (".bashrc", "bashrc"),
            ("img\u{1b}[2J.bmp", "img_[2J.bmp"),
            ("new\nline.txt", "new_line.txt"),
            ("photo 1.jpg", "photo 1.jpg"),
            ("ok...", "ok"),
            ("名前.png", "名前.png"),
            ("c\u{200B}am\u{FEFF}.bmp", "cam.bmp"),
            ("\u{200D}", "gen"),
            ("CON", "CON_"),
            ("nul.txt", "nul_.txt"),
            ("COM1", "COM1_"),
            ("lpt9.tar.gz", "lpt9_.tar.gz"),
            ("AUX.", "AUX_"),
            ("CONSOLE.txt", "CONSOLE.txt"),
            ("COM10", "COM10"),
            ("img.bmp.part", "img.bmp.part_"),
            ("x.META", "x.META_"),
            ("cam.part", "cam.part_"),
            ("partial", "partial"),
        ];
        for (raw, want) in cases {
            assert_eq!(sanitize(raw, "gen"), want, "{raw:?}");
        }
    }

    #[test]
    fn long_names_are_capped_with_their_extension() {
        let long = format!("{}.jpeg", "é".repeat(300));
        let s = sanitize(&long, "gen");
        assert!(s.len() <= MAX_NAME_BYTES, "{}", s.len());
        assert!(s.ends_with(".jpeg"));
    }

    #[test]
    fn numbered_alternatives() {
        assert_eq!(numbered("a.bmp", 0), "a.bmp");
        assert_eq!(numbered("a.bmp", 2), "a (2).bmp");
        assert_eq!(numbered("README", 1), "README (1)");
        assert_eq!(numbered("x.tar.gz", 1), "x.tar (1).gz");
    }

    proptest! {
        #[test]
        fn any_name_is_a_single_safe_component(raw in any::<String>()) {
            let s = sanitize(&raw, "gen");
            prop_assert!(!s.is_empty());
            prop_assert!(s != "." && s != "..");
            prop_assert!(!s.starts_with('.'));
            prop_assert!(!s.contains('/') && !s.contains('\\'));
            prop_assert!(!s.chars().any(char::is_control));
            prop_assert!(s.len() <= MAX_NAME_BYTES);
            prop_assert!(!s.chars().any(is_invisible));
            let lower = s.to_ascii_lowercase();
            prop_assert!(!lower.ends_with(".part") && !lower.ends_with(".meta"));
            let stem = lower.split('.').next().unwrap_or("");
            prop_assert!(!["con", "prn", "aux", "nul", "com1", "lpt1"].contains(&stem));
        }
    }
}
