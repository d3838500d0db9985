//! Images carved out of a text stream. Serial cameras (ArduCAM, ESP32-CAM
//! sketches) dump JPEG bytes into the same stream as their log lines. This
//! finds a JPEG (parsed by its segments, not by searching for FF D9), a PNG
//! (signature to IEND, chunk by chunk) or a BMP (by its header's size) between
//! the text, and hands back the text and the image separately. Pure and
//! streaming: bytes in any split in, [`Carved`] pieces out; it holds at most a
//! BMP header's worth of bytes.

use bytes::{Buf, Bytes, BytesMut};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Jpeg,
    Png,
    Bmp,
}

impl ImageKind {
    pub fn extension(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "jpg",
            ImageKind::Png => "png",
            ImageKind::Bmp => "bmp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carved {
    /// Bytes of the text stream, in order.
    Text(Bytes),
    /// An image starts here.
    Start(ImageKind),
    /// The image's bytes, in order.
    Data(Bytes),
    /// The image ended: whole (its format says so), or cut short (the stream
    /// ended, the structure broke, or it grew past the size limit).
    End { complete: bool },
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// Bytes that must be seen before a BMP can be told from the text "BM...".
const BMP_HEADER: usize = 18;
/// An "image" whose structure breaks within its first bytes was binary noise
/// that happened to look like a signature: those bytes stay text, and no
/// failed file is made of them.
const MIN_IMAGE: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Jpeg {
    /// Expecting 0xFF before a marker.
    MarkerStart,
    /// After 0xFF: the marker byte.
    Marker,
    /// A segment's length, high byte then low; `sos`: scan data follows it.
    LenHigh {
        sos: bool,
    },
    LenLow {
        high: u8,
        sos: bool,
    },
    /// Skipping the rest of a segment.
    Skip {
        left: u32,
        sos: bool,
    },
    /// Entropy-coded data after SOS: looking for FF followed by a marker.
    Scan {
        ff: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Png {
    /// A chunk's 4 length bytes and 4 type bytes, `n` of them seen.
    Head { n: u8, len: u32, kind: [u8; 4] },
    /// Skipping data and CRC; `last`: the IEND chunk.
    Skip { left: u64, last: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Text,
    Jpeg(Jpeg),
    Png(Png),
    Bmp(u64),
}

#[derive(Debug)]
pub struct Carver {
    state: State,
    /// Text bytes held back because they may start a signature.
    held: BytesMut,
    /// Bytes of the current image so far, and the most it may be.
    size: u64,
    limit: u64,
    /// An image's first bytes, until there are [`MIN_IMAGE`] of them.
    pending: Option<(ImageKind, BytesMut)>,
}

impl Carver {
    /// `limit`: an image larger than this is cut (`--max-file-size`).
    pub fn new(limit: u64) -> Self {
        Self {
            state: State::Text,
            held: BytesMut::new(),
            size: 0,
            limit,
            pending: None,
        }
    }

    /// Inside an image now.
    pub fn in_image(&self) -> bool {
        self.state != State::Text
    }

    /// Text held back (it may start a signature): shown after a pause.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    pub fn push(&mut self, data: &[u8], out: &mut Vec<Carved>) {
        self.push_shared(&Bytes::copy_from_slice(data), out);
    }

    /// [`Carver::push`] for bytes already shared: text comes out as slices of
    /// them, without a copy.
    pub fn push_shared(&mut self, data: &Bytes, out: &mut Vec<Carved>) {
        if self.held.is_empty() {
            return self.push_fresh(data.clone(), out);
        }
        let mut joined = std::mem::take(&mut self.held);
        joined.extend_from_slice(data);
        self.push_fresh(joined.freeze(), out);
    }

    fn push_fresh(&mut self, mut data: Bytes, out: &mut Vec<Carved>) {
        while !data.is_empty() {
            let used = match self.state {
                State::Text => self.text(&data, out),
                _ => self.image(&data, out),
            };
            data.advance(used);
        }
    }

    /// Held-back text (a lone `B` or 0xFF at the end of a pause) is text after all.
    pub fn flush_text(&mut self, out: &mut Vec<Carved>) {
        if self.state == State::Text && !self.held.is_empty() {
            out.push(Carved::Text(self.held.split().freeze()));
        }
    }

    /// The stream ended: held text is text, an image under way is cut short.
    pub fn finish(&mut self, out: &mut Vec<Carved>) {
        self.flush_text(out);
        if self.state != State::Text {
            self.end(false, out);
        }
    }

    /// Text until a signature; returns the bytes used.
    fn text(&mut self, data: &Bytes, out: &mut Vec<Carved>) -> usize {
        let mut i = 0;
        // Only these bytes start a signature: the text between them is skipped
        // at memory speed.
        while let Some(at) = memchr::memchr3(0xFF, 0x89, b'B', &data[i..]) {
            i += at;
            let rest = &data[i..];
            match signature(rest) {
                Sig::No => i += 1,
                Sig::Maybe => {
                    // Could start a signature: wait for more bytes.
                    if i > 0 {
                        out.push(Carved::Text(data.slice(..i)));
                    }
                    self.held.extend_from_slice(rest);
                    return data.len();
                }
                Sig::Yes(kind) => {
                    if i > 0 {
                        out.push(Carved::Text(data.slice(..i)));
                    }
                    self.pending = Some((kind, BytesMut::new()));
                    self.size = 0;
                    self.state = match kind {
                        ImageKind::Jpeg => State::Jpeg(Jpeg::MarkerStart),
                        ImageKind::Png => State::Png(Png::Head {
                            n: 0,
                            len: 0,
                            kind: [0; 4],
                        }),
                        ImageKind::Bmp => State::Bmp(u64::from(u32::from_le_bytes([
                            rest[2], rest[3], rest[4], rest[5],
                        ]))),
                    };
                    // The signature itself is image data.
                    let skip = match kind {
                        ImageKind::Jpeg => 2, // SOI; the next FF starts a marker
                        ImageKind::Png => PNG_SIGNATURE.len(),
                        ImageKind::Bmp => 0,
                    };
                    self.emit(&rest[..skip], out);
                    return i + skip;
                }
            }
        }
        out.push(Carved::Text(data.clone()));
        data.len()
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<Carved>) {
        if bytes.is_empty() {
            return;
        }
        self.size += bytes.len() as u64;
        if let Some((kind, first)) = &mut self.pending {
            first.extend_from_slice(bytes);
            if first.len() >= MIN_IMAGE {
                out.push(Carved::Start(*kind));
                out.push(Carved::Data(first.split().freeze()));
                self.pending = None;
            }
            return;
        }
        match out.last_mut() {
            // Consecutive pieces of one read become one Data.
            Some(Carved::Data(prev)) if prev.len() < 64 * 1024 => {
                let mut joined = BytesMut::from(&prev[..]);
                joined.extend_from_slice(bytes);
                *prev = joined.freeze();
            }
            _ => out.push(Carved::Data(Bytes::copy_from_slice(bytes))),
        }
    }

    fn end(&mut self, complete: bool, out: &mut Vec<Carved>) {
        self.state = State::Text;
        match self.pending.take() {
            // A whole tiny image.
            Some((kind, first)) if complete => {
                out.push(Carved::Start(kind));
                out.push(Carved::Data(first.freeze()));
            }
            // Noise that looked like a signature: text after all.
            Some((_, first)) => {
                if !first.is_empty() {
                    out.push(Carved::Text(first.freeze()));
                }
                return;
            }
            None => {}
        }
        out.push(Carved::End { complete });
    }

    /// Image bytes; returns the bytes used.
    fn image(&mut self, data: &[u8], out: &mut Vec<Carved>) -> usize {
        let mut i = 0;
        let start = 0;
        while i < data.len() {
            if self.size + (i - start) as u64 >= self.limit {
                self.emit(&data[start..i], out);
                self.end(false, out);
                return i;
            }
            let b = data[i];
            i += 1;
            let next = match self.state {
                State::Jpeg(j) => match jpeg_step(j, b) {
                    Some(j) => State::Jpeg(j),
                    None => {
                        // EOI (complete) or a broken structure (not).
                        let complete = matches!(j, Jpeg::Marker | Jpeg::Scan { ff: true }) && b == 0xD9;
                        self.emit(&data[start..i], out);
                        self.end(complete, out);
                        return i;
                    }
                },
                State::Png(p) => match png_step(p, b) {
                    Ok(Some(p)) => State::Png(p),
                    Ok(None) => {
                        self.emit(&data[start..i], out);
                        self.end(true, out);
                        return i;
                    }
                    Err(()) => {
                        self.emit(&data[start..i], out);
                        self.end(false, out);
                        return i;
                    }
                },
                State::Bmp(total) => {
                    if self.size + (i - start) as u64 >= total {
                        self.emit(&data[start..i], out);
                        self.end(true, out);
                        return i;
                    }
                    State::Bmp(total)
                }
                State::Text => unreachable!("image() runs only inside an image"),
            };
            self.state = next;
        }
        self.emit(&data[start..], out);
        data.len()
    }
}

enum Sig {
    No,
    /// A prefix of a signature: more bytes needed to tell.
    Maybe,
    Yes(ImageKind),
}

fn signature(rest: &[u8]) -> Sig {
    match rest[0] {
        0xFF => prefix_of(rest, &[0xFF, 0xD8, 0xFF], ImageKind::Jpeg),
        0x89 => prefix_of(rest, PNG_SIGNATURE, ImageKind::Png),
        b'B' => bmp(rest),
        _ => Sig::No,
    }
}

fn prefix_of(rest: &[u8], sig: &[u8], kind: ImageKind) -> Sig {
    let n = rest.len().min(sig.len());
    if rest[..n] != sig[..n] {
        Sig::No
    } else if n < sig.len() {
        Sig::Maybe
    } else {
        Sig::Yes(kind)
    }
}

/// "BM" with a header that makes sense: a plausible size, reserved zeros, the
/// pixel offset inside the file and a known DIB header size. Text such as
/// "BMP280 ok" fails at once.
fn bmp(rest: &[u8]) -> Sig {
    if rest.len() >= 2 && rest[1] != b'M' {
        return Sig::No;
    }
    let u32_at = |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
    // Decide as early as each field allows, so text is held back briefly.
    if rest.len() >= 10 && rest[6..10] != [0, 0, 0, 0] {
        return Sig::No;
    }
    if rest.len() < BMP_HEADER {
        return Sig::Maybe;
    }
    let size = u32_at(2);
    let offset = u32_at(10);
    let dib = u32_at(14);
    let ok = (54..=512 * 1024 * 1024).contains(&size)
        && (26..size).contains(&offset)
        && matches!(dib, 12 | 40 | 52 | 56 | 108 | 124);
    if ok { Sig::Yes(ImageKind::Bmp) } else { Sig::No }
}

/// One JPEG byte; None when the image ends (after EOI) or breaks.
fn jpeg_step(state: Jpeg, b: u8) -> Option<Jpeg> {
    let after = |sos: bool| {
        if sos {
            Jpeg::Scan { ff: false }
        } else {
            Jpeg::MarkerStart
        }
    };
    Some(match state {
        Jpeg::MarkerStart if b == 0xFF => Jpeg::Marker,
        Jpeg::MarkerStart => return None,
        Jpeg::Marker => match b {
            0xFF => Jpeg::Marker,                           // fill bytes
            0xD9 | 0x00 => return None,                     // EOI; or not a marker
            0xD8 | 0x01 | 0xD0..=0xD7 => Jpeg::MarkerStart, // no length
            0xDA => Jpeg::LenHigh { sos: true },
            _ => Jpeg::LenHigh { sos: false },
        },
        Jpeg::LenHigh { sos } => Jpeg::LenLow { high: b, sos },
        Jpeg::LenLow { high, sos } => {
            let len = u32::from(high) << 8 | u32::from(b);
            match len {
                0 | 1 => return None,
                2 => after(sos),
                _ => Jpeg::Skip { left: len - 2, sos },
            }
        }
        Jpeg::Skip { left: 1, sos } => after(sos),
        Jpeg::Skip { left, sos } => Jpeg::Skip { left: left - 1, sos },
        Jpeg::Scan { ff: false } => Jpeg::Scan { ff: b == 0xFF },
        Jpeg::Scan { ff: true } => match b {
            0x00 | 0xD0..=0xD7 => Jpeg::Scan { ff: false }, // stuffed byte, restart marker
            0xFF => Jpeg::Scan { ff: true },
            0xD9 => return None, // EOI
            // Another segment (progressive JPEGs have several scans).
            0xDA => Jpeg::LenHigh { sos: true },
            _ => Jpeg::LenHigh { sos: false },
        },
    })
}

/// One PNG byte; Ok(None) after IEND's CRC, Err when the structure breaks.
fn png_step(state: Png, b: u8) -> Result<Option<Png>, ()> {
    Ok(Some(match state {
        Png::Head { n, len, kind } if n < 4 => {
            let len = (len << 8) | u32::from(b);
            if n == 3 && len > 0x7fff_ffff {
                return Err(());
            }
            Png::Head { n: n + 1, len, kind }
        }
        Png::Head { n, len, mut kind } => {
            if !b.is_ascii_alphabetic() {
                return Err(());
            }
            kind[(n - 4) as usize] = b;
            if n < 7 {
                Png::Head { n: n + 1, len, kind }
            } else {
                // The data, then 4 bytes of CRC.
                Png::Skip {
                    left: u64::from(len) + 4,
                    last: &kind == b"IEND",
                }
            }
        }
        Png::Skip { left: 1, last: true } => return Ok(None),
        Png::Skip { left: 1, last: false } => Png::Head {
            n: 0,
            len: 0,
            kind: [0; 4],
        },
        Png::Skip { left, last } => Png::Skip { left: left - 1, last },
    }))
}

#[cfg(test)]
mod tests;
