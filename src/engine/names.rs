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
    cap_keeping_extension(trimmed, MAX_NAME_BYTES)
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
pub const RESERVED_NAMES: &[&str] = &["received.jsonl", "conversation.log"];

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
        }
    }
}
