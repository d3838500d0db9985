//! Finding text in the conversation: case-insensitive matches as character
//! ranges, so the pane can highlight them and wrap lines around them.

/// Where `needle` occurs in `chars`, as `[start, end)` character ranges,
/// case-insensitively, without overlaps.
pub fn match_ranges(chars: &[char], needle: &str) -> Vec<(usize, usize)> {
    let needle: Vec<char> = needle.chars().map(fold).collect();
    if needle.is_empty() || needle.len() > chars.len() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i + needle.len() <= chars.len() {
        if chars[i..i + needle.len()]
            .iter()
            .zip(&needle)
            .all(|(a, b)| fold(*a) == *b)
        {
            out.push((i, i + needle.len()));
            i += needle.len();
        } else {
            i += 1;
        }
    }
    out
}

/// True if `text` contains `needle`, case-insensitively.
pub fn contains(text: &str, needle: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    !match_ranges(&chars, needle).is_empty()
}

fn fold(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_are_case_insensitive_and_do_not_overlap() {
        let chars: Vec<char> = "Error: ERROR error".chars().collect();
        assert_eq!(match_ranges(&chars, "error"), vec![(0, 5), (7, 12), (13, 18)]);
        let chars: Vec<char> = "aaaa".chars().collect();
        assert_eq!(match_ranges(&chars, "aa"), vec![(0, 2), (2, 4)]);
        assert!(match_ranges(&chars, "").is_empty());
        assert!(contains("Sensor CALIB failed", "calib"));
        assert!(!contains("ok", "okay"));
    }
}
