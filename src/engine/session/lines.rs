//! Text lines on a session: what the line decoder gives, an unterminated line
//! shown after a pause, and texts longer than `--max-line` in pieces.

use super::*;

impl Session {
    pub(super) async fn start_lines(&mut self) {
        self.mode = Mode::Lines(LineDecoder::new(self.shared.settings.max_line));
        self.announce("lines").await;
    }

    pub(super) async fn flush_partial_line(&mut self) {
        self.partial_since = None;
        let partial = match &mut self.mode {
            Mode::Lines(decoder) => decoder.take_partial(),
            _ => None,
        };
        if let Some(line) = partial {
            self.text_in(&line).await;
        }
    }

    /// Device text longer than `--max-line` is shown in pieces.
    pub(super) async fn text_in_capped(&mut self, bytes: &[u8]) {
        let text = from_device(bytes);
        for piece in crate::text::pieces(&text, self.shared.settings.max_line) {
            self.text(Direction::In, piece.to_string()).await;
        }
    }

    pub(super) async fn text_in(&mut self, bytes: &[u8]) {
        // The bytes as read since the last text (its line ending included).
        let raw = (!self.wire_in.is_empty()).then(|| self.wire_in.split().freeze());
        self.text_with_raw(Direction::In, from_device(bytes), raw).await;
    }
}
