//! Recognising a file from its content: the extension of a nameless (cf) file, and
//! whether what arrived is complete by the format's own header or trailer.

/// How many leading bytes [`FileKind::sniff`] needs at most.
pub const HEAD_LEN: usize = 16;
/// How many trailing bytes [`completeness`] looks at.
/// Long enough for the zero padding some cameras append after a JPEG's EOI.
pub const TAIL_LEN: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Bmp,
    Jpeg,
    Png,
    Gif,
    Unknown,
}

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
/// The IEND chunk's type and CRC: every PNG ends with these 8 bytes.
const PNG_IEND: &[u8] = b"IEND\xaeB`\x82";

impl FileKind {
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(b"BM") {
            FileKind::Bmp
        } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            FileKind::Jpeg
        } else if head.starts_with(PNG_MAGIC) {
            FileKind::Png
        } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
            FileKind::Gif
        } else {
            FileKind::Unknown
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            FileKind::Bmp => "bmp",
            FileKind::Jpeg => "jpg",
            FileKind::Png => "png",
            FileKind::Gif => "gif",
            FileKind::Unknown => "bin",
        }
    }

    /// Whether a prefix this long can still turn out to be a known format, so the
    /// caller should wait for more bytes before deciding.
    pub fn undecided(head: &[u8]) -> bool {
        head.len() < PNG_MAGIC.len()
            && [&b"BM"[..], &[0xFF, 0xD8, 0xFF], PNG_MAGIC, b"GIF87a", b"GIF89a"]
                .iter()
                .any(|magic| magic.starts_with(head) || head.starts_with(magic))
            && FileKind::sniff(head) == FileKind::Unknown
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completeness {
    /// The content's own header or trailer says it is all there.
    Complete,
    /// The format carries no length: whatever arrived before the close is the file.
    EndedByClose,
    /// Shorter than its own header says, or missing its trailer.
    Truncated { expected: Option<u64> },
}

/// Judges a file that ended with the connection, from its first and last bytes.
pub fn completeness(kind: FileKind, head: &[u8], tail: &[u8], size: u64) -> Completeness {
    match kind {
        FileKind::Bmp => match head.get(2..6) {
            Some(field) => {
                let declared = u32::from_le_bytes([field[0], field[1], field[2], field[3]]) as u64;
                // Some encoders leave the size field 0: then the format carries no length.
                if declared < 26 {
                    Completeness::EndedByClose
                } else if size >= declared {
                    Completeness::Complete
                } else {
                    Completeness::Truncated {
                        expected: Some(declared),
                    }
                }
            }
            None => Completeness::Truncated { expected: None },
        },
        FileKind::Jpeg => {
            // EOI, possibly followed by padding some cameras append.
            let trimmed = trim_padding(tail);
            if trimmed.ends_with(&[0xFF, 0xD9]) {
                Completeness::Complete
            } else {
                Completeness::Truncated { expected: None }
            }
        }
        FileKind::Png => {
            if tail.ends_with(PNG_IEND) {
                Completeness::Complete
            } else {
                Completeness::Truncated { expected: None }
            }
        }
        FileKind::Gif | FileKind::Unknown => Completeness::EndedByClose,
    }
}

fn trim_padding(tail: &[u8]) -> &[u8] {
    let end = tail
        .iter()
        .rposition(|&b| !matches!(b, 0 | b'\r' | b'\n'))
        .map_or(0, |i| i + 1);
    &tail[..end]
}

/// Keeps the first [`HEAD_LEN`] and last [`TAIL_LEN`] bytes of a stream, touching at
/// most that many bytes per chunk so the data path stays copy-free.
#[derive(Debug, Default, Clone)]
pub struct HeadTail {
    head: Vec<u8>,
    tail: Vec<u8>,
    total: u64,
}

impl HeadTail {
    pub fn observe(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        if self.head.len() < HEAD_LEN {
            let take = (HEAD_LEN - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        if chunk.len() >= TAIL_LEN {
            self.tail.clear();
            self.tail.extend_from_slice(&chunk[chunk.len() - TAIL_LEN..]);
        } else {
            self.tail.extend_from_slice(chunk);
            let excess = self.tail.len().saturating_sub(TAIL_LEN);
            self.tail.drain(..excess);
        }
    }

    pub fn head(&self) -> &[u8] {
        &self.head
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn kind(&self) -> FileKind {
        FileKind::sniff(&self.head)
    }

    pub fn completeness(&self) -> Completeness {
        completeness(self.kind(), &self.head, &self.tail, self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bmp(declared: u32, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        v[0] = b'B';
        v[1] = b'M';
        v[2..6].copy_from_slice(&declared.to_le_bytes());
        v
    }

    fn observe_in_chunks(data: &[u8], chunk: usize) -> HeadTail {
        let mut ht = HeadTail::default();
        for c in data.chunks(chunk.max(1)) {
            ht.observe(c);
        }
        ht
    }

    #[test]
    fn sniffs_common_image_formats() {
        assert_eq!(FileKind::sniff(b"BM\x36\x00"), FileKind::Bmp);
        assert_eq!(FileKind::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), FileKind::Jpeg);
        assert_eq!(FileKind::sniff(PNG_MAGIC), FileKind::Png);
        assert_eq!(FileKind::sniff(b"GIF89a.."), FileKind::Gif);
        assert_eq!(FileKind::sniff(b"hello"), FileKind::Unknown);
        assert!(FileKind::undecided(b"\x89PN"));
        assert!(FileKind::undecided(b"B"));
        assert!(!FileKind::undecided(b"BM"));
        assert!(!FileKind::undecided(b"xy"));
    }

    #[test]
    fn bmp_is_judged_by_its_size_field() {
        let full = bmp(1000, 1000);
        for chunk in [1, 7, 16, 17, 1000] {
            assert_eq!(
                observe_in_chunks(&full, chunk).completeness(),
                Completeness::Complete
            );
        }
        let short = bmp(1000, 600);
        assert_eq!(
            observe_in_chunks(&short, 64).completeness(),
            Completeness::Truncated { expected: Some(1000) }
        );
        assert_eq!(
            observe_in_chunks(&bmp(0, 100), 64).completeness(),
            Completeness::EndedByClose
        );
    }

    #[test]
    fn jpeg_needs_eoi_and_png_needs_iend() {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3];
        assert!(matches!(
            observe_in_chunks(&jpeg, 3).completeness(),
            Completeness::Truncated { .. }
        ));
        jpeg.extend_from_slice(&[0xFF, 0xD9, 0, 0]);
        assert_eq!(observe_in_chunks(&jpeg, 3).completeness(), Completeness::Complete);

        let mut png = PNG_MAGIC.to_vec();
        png.extend_from_slice(&[0; 40]);
        assert!(matches!(
            observe_in_chunks(&png, 5).completeness(),
            Completeness::Truncated { .. }
        ));
        png.extend_from_slice(&[0, 0, 0, 0]);
        png.extend_from_slice(PNG_IEND);
        for chunk in [1, 5, 16, 100] {
            assert_eq!(
                observe_in_chunks(&png, chunk).completeness(),
                Completeness::Complete
            );
        }
    }

    #[test]
    fn jpeg_padding_after_eoi_is_allowed() {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 0xFF, 0xD9];
        jpeg.extend(std::iter::repeat_n(0u8, 600));
        assert_eq!(
            observe_in_chunks(&jpeg, 64).completeness(),
            Completeness::Complete
        );
    }

    #[test]
    fn formats_without_length_end_by_close() {
        assert_eq!(
            observe_in_chunks(b"GIF89a....", 4).completeness(),
            Completeness::EndedByClose
        );
        assert_eq!(
            observe_in_chunks(b"raw sensor dump", 4).completeness(),
            Completeness::EndedByClose
        );
    }

    #[test]
    fn head_and_tail_match_the_stream_for_any_chunking() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        for chunk in [1, 7, 40, 1023, 1024, 1025, 3000] {
            let ht = observe_in_chunks(&data, chunk);
            assert_eq!(ht.head(), &data[..HEAD_LEN]);
            assert_eq!(ht.tail, &data[data.len() - TAIL_LEN..]);
            assert_eq!(ht.total(), 3000);
        }
    }
}
