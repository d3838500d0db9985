//! Text lines (LF or CRLF), with a hard cap on line length.

use bytes::{Buf, Bytes, BytesMut};

/// Splits a byte stream into lines. A line longer than `max_line` is cut into
/// pieces of `max_line` bytes, so the buffer never grows past `max_line`.
#[derive(Debug)]
pub struct LineDecoder {
    buf: BytesMut,
    max_line: usize,
    /// The last partial line handed out by [`LineDecoder::take_partial`] ended in
    /// CR: an LF arriving next completes that CRLF and is not an empty line.
    skip_lf: bool,
}

impl LineDecoder {
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_line: max_line.max(1),
            skip_lf: false,
        }
    }

    /// Feeds one read; complete lines (without their terminator) go to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Bytes>) {
        self.push_each(data, &mut |line| out.push(Bytes::copy_from_slice(line)));
    }

    /// Feeds one read; each complete line (without its terminator) is handed to
    /// `on_line`. A line wholly inside `data` is handed out where it lies, with
    /// no copy: only the unterminated rest is kept.
    pub fn push_each(&mut self, mut data: &[u8], on_line: &mut dyn FnMut(&[u8])) {
        if self.skip_lf {
            self.skip_lf = false;
            if data.first() == Some(&b'\n') {
                data = &data[1..];
            }
        }
        while !data.is_empty() {
            if self.buf.is_empty() {
                // A line of at most `max_line` (plus its CR LF) ends in the window.
                let window = &data[..data.len().min(self.max_line + 2)];
                if let Some(i) = memchr::memchr(b'\n', window) {
                    let line = without_cr(&data[..i]);
                    if line.len() <= self.max_line {
                        on_line(line);
                        data = &data[i + 1..];
                        continue;
                    }
                }
            }
            data = self.buffered(data, on_line);
        }
        if self.buf.is_empty() {
            // An idle connection keeps no buffer alive.
            self.buf = BytesMut::new();
        }
    }

    /// One step through the buffer, for a line that started in an earlier read
    /// or is too long; returns the bytes not used yet.
    fn buffered<'a>(&mut self, data: &'a [u8], on_line: &mut dyn FnMut(&[u8])) -> &'a [u8] {
        if self.buf.len() >= self.max_line {
            // The buffer is full: the next byte tells a whole line (its LF, or
            // the CR of a CRLF) from one that must be cut.
            return match data[0] {
                b'\n' => {
                    self.emit_line(on_line);
                    &data[1..]
                }
                b'\r' if self.buf.len() == self.max_line => {
                    self.buf.extend_from_slice(b"\r");
                    &data[1..]
                }
                _ => {
                    self.emit_piece(on_line);
                    data
                }
            };
        }
        let room = self.max_line - self.buf.len();
        let window = &data[..data.len().min(room)];
        match memchr::memchr(b'\n', window) {
            Some(i) => {
                self.buf.extend_from_slice(&window[..i]);
                self.emit_line(on_line);
                &data[i + 1..]
            }
            None => {
                self.buf.extend_from_slice(window);
                &data[window.len()..]
            }
        }
    }

    fn emit_line(&mut self, on_line: &mut dyn FnMut(&[u8])) {
        let line = without_cr(&self.buf);
        on_line(line);
        self.buf.clear();
    }

    /// Cuts an overlong line: `max_line` bytes, or fewer so a UTF-8 character that
    /// straddles the cut stays whole in the next piece.
    fn emit_piece(&mut self, on_line: &mut dyn FnMut(&[u8])) {
        let mut cut = self.max_line.min(self.buf.len());
        if let Err(e) = std::str::from_utf8(&self.buf[..cut])
            && e.error_len().is_none()
            && e.valid_up_to() > 0
        {
            cut = e.valid_up_to();
        }
        on_line(&self.buf[..cut]);
        self.buf.advance(cut);
    }

    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Hands out the unterminated rest (shown after an idle time, or at close).
    pub fn take_partial(&mut self) -> Option<Bytes> {
        if self.buf.is_empty() {
            return None;
        }
        let mut line = self.buf.split();
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
            self.skip_lf = true;
        }
        Some(line.freeze())
    }
}

/// A line without the CR of its CRLF (a byte test: a slice compare would be a
/// call to `memcmp` per line).
fn without_cr(line: &[u8]) -> &[u8] {
    match line.split_last() {
        Some((b'\r', rest)) => rest,
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_in_pieces(stream: &[u8], cuts: &[usize], max: usize) -> Vec<Vec<u8>> {
        let mut dec = LineDecoder::new(max);
        let mut out = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
            let cut = cut.clamp(start, stream.len());
            dec.push(&stream[start..cut], &mut out);
            start = cut;
        }
        out.extend(dec.take_partial());
        out.into_iter().map(|b| b.to_vec()).collect()
    }

    #[test]
    fn lf_and_crlf_lines_in_every_split() {
        let stream = b"OK\r\nready\nWIFI GOT IP\r\n\r\nlast";
        let want: Vec<Vec<u8>> = vec![
            b"OK".to_vec(),
            b"ready".to_vec(),
            b"WIFI GOT IP".to_vec(),
            b"".to_vec(),
            b"last".to_vec(),
        ];
        for a in 0..=stream.len() {
            for b in a..=stream.len() {
                assert_eq!(decode_in_pieces(stream, &[a, b], 1024), want, "cuts {a} {b}");
            }
        }
    }

    #[test]
    fn overlong_lines_are_cut_into_pieces() {
        let got = decode_in_pieces(b"abcdefghij\nxy\n", &[3, 7], 4);
        let want: Vec<&[u8]> = vec![b"abcd", b"efgh", b"ij", b"xy"];
        assert_eq!(got, want);
    }

    #[test]
    fn a_line_of_exactly_max_line_is_kept_whole_in_every_split() {
        let stream = b"0123456789abcdef\n0123456789abcde\r\nend\n";
        let want: Vec<&[u8]> = vec![b"0123456789abcdef", b"0123456789abcde", b"end"];
        for a in 0..=stream.len() {
            for b in a..=stream.len() {
                assert_eq!(decode_in_pieces(stream, &[a, b], 16), want, "cuts {a} {b}");
            }
        }
    }

    #[test]
    fn cutting_keeps_utf8_characters_whole() {
        let got = decode_in_pieces("ééé\nend\n".as_bytes(), &[], 5);
        let want: Vec<&[u8]> = vec!["éé".as_bytes(), "é".as_bytes(), b"end"];
        assert_eq!(got, want);
    }

    #[test]
    fn partial_line_then_crlf_completion_makes_no_empty_line() {
        let mut dec = LineDecoder::new(64);
        let mut out = Vec::new();
        dec.push(b"prompt>\r", &mut out);
        assert!(out.is_empty());
        assert_eq!(dec.take_partial().as_deref(), Some(&b"prompt>"[..]));
        dec.push(b"\nnext\n", &mut out);
        assert_eq!(out, vec![Bytes::from_static(b"next")]);
    }

    proptest! {
        /// Lines handed out where they lie (whole reads) and lines put together
        /// in the buffer (a byte at a time) are the same lines.
        #[test]
        fn every_split_gives_the_same_lines(
            stream in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), Just(0xc3u8), Just(0xa9u8)], 0..300),
            cuts in proptest::collection::vec(0usize..300, 0..6),
            max in 1usize..12,
        ) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let byte_by_byte: Vec<usize> = (1..stream.len()).collect();
            prop_assert_eq!(
                decode_in_pieces(&stream, &cuts, max),
                decode_in_pieces(&stream, &byte_by_byte, max)
            );
        }

        #[test]
        fn arbitrary_input_never_panics_and_stays_bounded(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20),
            max in 1usize..50,
        ) {
            let mut dec = LineDecoder::new(max);
            let mut out = Vec::new();
            let mut total_in = 0;
            for c in &chunks {
                dec.push(c, &mut out);
                total_in += c.len();
                // A full line may wait for one more byte (its CR) to learn where it ends.
                prop_assert!(dec.buf.len() <= max + 1);
            }
            out.extend(dec.take_partial());
            for line in &out {
                prop_assert!(line.len() <= max);
            }
            // Nothing is lost: every byte is in a line or was a terminator.
            let kept: usize = out.iter().map(|l| l.len()).sum();
            prop_assert!(kept <= total_in);
            let newlines = chunks.iter().flatten().filter(|&&b| b == b'\n').count();
            let crs = chunks.iter().flatten().filter(|&&b| b == b'\r').count();
            prop_assert!(kept + newlines + crs >= total_in);
        }
    }
}
