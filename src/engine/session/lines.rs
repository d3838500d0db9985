//! Text lines on a session: what the line decoder gives, an unterminated line
//! shown after a pause, and texts longer than `--max-line` in pieces.

use super::*;
use crate::protocol::carve::{Carved, Carver, ImageKind};

impl Session {
    pub(super) async fn start_lines(&mut self) {
        self.mode = Mode::Lines(LineDecoder::new(self.shared.settings.max_line));
        if self.shared.settings.carve {
            self.carver = Some(Box::new(Carver::new(self.shared.settings.max_file_size)));
        }
        self.announce("lines").await;
    }

    pub(super) async fn flush_partial_line(&mut self) {
        self.partial_since = None;
        // Text the carver held back (it might have started an image) is text.
        let mut held = Vec::new();
        if let Some(carver) = self.carver.as_mut() {
            carver.flush_text(&mut held);
        }
        let partial = match &mut self.mode {
            Mode::Lines(decoder) => {
                let mut lines = Vec::new();
                for piece in held {
                    if let Carved::Text(text) = piece {
                        decoder.push(&text, &mut lines);
                    }
                }
                for line in lines {
                    Box::pin(self.text_in(&line)).await;
                }
                match &mut self.mode {
                    Mode::Lines(decoder) => decoder.take_partial(),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(line) = partial {
            self.text_in(&line).await;
        }
    }

    /// A lines stream with images in it: the text goes to the line decoder, each
    /// image to a file of its own (`<timestamp>.<ext>` in the device's folder).
    /// The lines between images go out together, as [`Session::lines_read`]'s do.
    pub(super) async fn carve_lines(&mut self, data: Bytes) {
        let mut pieces = Vec::new();
        if let Some(carver) = self.carver.as_mut() {
            carver.push_shared(&data, &mut pieces);
        }
        let mut read = Some(data);
        let mut batch = self.text_batch();
        batch.reserve(read.as_ref().map_or(0, |d| d.len()));
        for piece in pieces {
            match piece {
                Carved::Text(text) => self.decode_lines(&text, &mut batch),
                Carved::Start(kind) => {
                    // The text before the image is a line of its own ("IMG:").
                    if let Mode::Lines(decoder) = &mut self.mode
                        && let Some(line) = decoder.take_partial()
                    {
                        batch.push_from_device(&line);
                    }
                    let lines = std::mem::replace(&mut batch, self.text_batch());
                    self.texts(lines, &mut read).await;
                    self.begin_carved(kind).await;
                }
                Carved::Data(bytes) => self.write_carved(bytes).await,
                Carved::End { complete } => self.end_carved(complete).await,
            }
        }
        self.texts(batch, &mut read).await;
        if let Some(data) = read {
            self.keep_wire(&data);
        }
        let waiting = match &self.mode {
            Mode::Lines(decoder) => decoder.has_partial(),
            _ => false,
        } || self.carver.as_ref().is_some_and(|c| c.holding());
        self.partial_since = waiting.then(Instant::now);
    }

    /// A read of a lines device without a carver: its lines go out together.
    pub(super) async fn lines_read(&mut self, data: Bytes) {
        let mut batch = self.text_batch();
        batch.reserve(data.len());
        self.decode_lines(&data, &mut batch);
        if let Mode::Lines(decoder) = &self.mode {
            self.partial_since = decoder.has_partial().then(Instant::now);
        }
        let mut read = Some(data);
        self.texts(batch, &mut read).await;
        if let Some(data) = read {
            self.keep_wire(&data);
        }
    }

    /// Text through the line decoder: its complete lines into `batch`.
    fn decode_lines(&mut self, text: &[u8], batch: &mut TextBatch) {
        let Mode::Lines(decoder) = &mut self.mode else {
            return;
        };
        decoder.push_each(text, &mut |line| {
            batch.push_from_device(line);
        });
        // A UDP datagram is one message, with or without its line ending.
        if self.stream.at_message_end()
            && let Some(rest) = decoder.take_partial()
        {
            batch.push_from_device(&rest);
        }
    }

    fn text_batch(&self) -> TextBatch {
        TextBatch::new(self.conn, self.device.clone(), Direction::In)
    }

    async fn begin_carved(&mut self, kind: ImageKind) {
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S%.3f");
        let name = format!("{stamp}.{}", kind.extension());
        let Some(part) = self.start_file(&name, None).await else {
            return;
        };
        self.carved = Some(Box::new(Transfer::new(part, name, None, Instant::now())));
    }

    async fn write_carved(&mut self, bytes: Bytes) {
        let Some(t) = self.carved.as_mut() else {
            return; // its file could not be made: dropped (said already)
        };
        give_back_turn_before(&mut self.turn, &t.part, bytes.len());
        if let Err(e) = t.part.write(bytes).await {
            let (name, part) = (t.name.clone(), t.part.part_path().to_path_buf());
            self.carved = None;
            return self.disk_failure(&name, &e, Some(part), None).await;
        }
        if let Some(due) = progress_due(t) {
            let event = self.progress_event(due);
            self.shared.emit(event).await;
        }
    }

    async fn end_carved(&mut self, complete: bool) {
        let Some(t) = self.carved.take() else {
            return;
        };
        if complete {
            self.save(*t, false).await;
        } else {
            let reason = "the image was cut short (the stream ended or its structure broke)".to_string();
            self.keep_failed(*t, reason).await;
        }
    }

    /// The link closed: an image under way is kept as `.part`, held text is shown.
    pub(super) async fn finish_carving(&mut self) {
        let mut pieces = Vec::new();
        if let Some(carver) = self.carver.as_mut() {
            carver.finish(&mut pieces);
        }
        for piece in pieces {
            match piece {
                Carved::End { complete } => self.end_carved(complete).await,
                Carved::Text(text) => self.text_in(&text).await,
                _ => {}
            }
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
        // Taken, not split: a split would keep the buffer alive in `wire_in`
        // after the event is gone, for every idle device.
        let raw = (!self.wire_in.is_empty()).then(|| std::mem::take(&mut self.wire_in).freeze());
        self.text_with_raw(Direction::In, from_device(bytes), raw).await;
    }
}
