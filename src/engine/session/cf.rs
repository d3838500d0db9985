//! The article's protocol (cf) on a session: commands and replies as texts, and
//! files that run from their marker until the connection closes.

use super::*;

impl Session {
    pub(super) async fn on_cf(&mut self, message: CfMessage) {
        match message {
            CfMessage::Handshake => self.text_in(crate::protocol::cf::HANDSHAKE).await,
            CfMessage::Command(command) => self.text_in_capped(&command).await,
            CfMessage::Text(text) => {
                for line in text.split(|&b| b == b'\n') {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if !line.is_empty() {
                        self.text_in_capped(line).await;
                    }
                }
            }
            CfMessage::FileStart => {
                self.cf_file = CfFile::Pending {
                    chunks: Vec::new(),
                    len: 0,
                    started: Instant::now(),
                };
            }
            CfMessage::FileData(data) => match &mut self.cf_file {
                CfFile::Pending { chunks, len, .. } => {
                    *len += data.len();
                    chunks.push(data);
                    let mut head = Vec::with_capacity(HEAD_LEN);
                    for c in chunks.iter() {
                        head.extend_from_slice(&c[..c.len().min(HEAD_LEN - head.len())]);
                    }
                    if !FileKind::undecided(&head) {
                        self.begin_cf_file().await;
                    }
                }
                CfFile::Active(_) => self.write_file(data).await,
                CfFile::None | CfFile::Discarding => {}
            },
        }
    }

    /// Names the pending cf file by its content and starts writing it.
    pub(super) async fn begin_cf_file(&mut self) {
        let CfFile::Pending { chunks, started, .. } =
            std::mem::replace(&mut self.cf_file, CfFile::Discarding)
        else {
            return;
        };
        let mut observed = HeadTail::default();
        for c in &chunks {
            observed.observe(c);
        }
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S%.3f");
        let name = format!("{stamp}.{}", observed.kind().extension());
        let Some(part) = self.start_file(&name, None).await else {
            return;
        };
        self.cf_file = CfFile::Active(Box::new(Transfer::new(part, name, None, started)));
        for c in chunks {
            self.write_file(c).await;
        }
    }

    pub(super) async fn write_file(&mut self, data: Bytes) {
        let CfFile::Active(t) = &mut self.cf_file else {
            return;
        };
        let limit = self.shared.settings.max_file_size;
        if t.part.len() + data.len() as u64 > limit {
            // What fits under the limit is kept with the rest of the `.part`.
            let fits = limit.saturating_sub(t.part.len()) as usize;
            let fit_written = t.part.write(data.slice(..fits.min(data.len()))).await;
            let CfFile::Active(t) = std::mem::replace(&mut self.cf_file, CfFile::Discarding) else {
                return;
            };
            if let Err(e) = fit_written {
                let part = t.part.part_path().to_path_buf();
                return self.disk_failure(&t.name, &e, Some(part), None).await;
            }
            let reason = format!(
                "larger than the {} limit (--max-file-size); the rest is discarded",
                crate::text::size(limit)
            );
            self.keep_failed(*t, reason).await;
            return;
        }
        t.observed.observe(&data);
        give_back_turn_before(&mut self.turn, &t.part, data.len());
        if let Err(e) = t.part.write(data).await {
            let (name, part) = (t.name.clone(), t.part.part_path().to_path_buf());
            self.cf_file = CfFile::Discarding;
            self.disk_failure(&name, &e, Some(part), None).await;
            return;
        }
        if let Some(due) = progress_due(t) {
            let event = self.progress_event(due);
            self.shared.emit(event).await;
        }
    }

    pub(super) fn progress_event(&self, (name, bytes): (String, u64)) -> EventKind {
        EventKind::FileProgress {
            conn: self.conn,
            device: self.device.clone(),
            name,
            bytes,
        }
    }

    /// A file ended with the connection: saved if its content is complete (or carries
    /// no length and the device closed normally), else kept as `.part`.
    pub(super) async fn finish_cf_file(&mut self, end: &End) {
        match std::mem::replace(&mut self.cf_file, CfFile::None) {
            CfFile::None | CfFile::Discarding => {}
            CfFile::Pending { len: 0, .. } => {
                self.shared
                    .emit(EventKind::FileFailed {
                        conn: self.conn,
                        device: self.device.clone(),
                        name: String::new(),
                        reason: "the device announced a file but sent no bytes".into(),
                        part: None,
                    })
                    .await;
            }
            pending @ CfFile::Pending { .. } => {
                self.cf_file = pending;
                self.begin_cf_file().await;
                Box::pin(self.finish_cf_file(end)).await;
            }
            CfFile::Active(t) => match (t.observed.completeness(), end) {
                (Completeness::Complete, _) => self.save(*t, false).await,
                (Completeness::EndedByClose, End::DeviceClosed) => self.save(*t, true).await,
                // A reset (the device closed without reading what the console sent it,
                // such as the greeting) makes its TCP stack drop what it had not sent
                // yet: the end of a file without a length may be missing.
                (Completeness::EndedByClose, End::DeviceReset) => {
                    let reason = "the connection was reset (the device closed without reading what the console sent, so its last bytes may be lost)".to_string();
                    self.keep_failed(*t, reason).await;
                }
                (Completeness::Truncated { expected }, _) => {
                    let kind = t.observed.kind().extension().to_ascii_uppercase();
                    let got = t.part.len();
                    let reason = match expected {
                        Some(n) => {
                            format!("truncated: the {kind} header says {n} bytes, {got} arrived")
                        }
                        None if kind == "BMP" => {
                            format!("truncated: only {got} bytes arrived, not even a whole BMP header")
                        }
                        None => format!(
                            "truncated: the {kind} data ends before its end marker ({got} bytes arrived)"
                        ),
                    };
                    self.keep_failed(*t, reason).await;
                }
                (Completeness::EndedByClose, other) => {
                    let reason = format!("interrupted: {}", other.reason());
                    self.keep_failed(*t, reason).await;
                }
            },
        }
    }

    pub(super) async fn save(&mut self, t: Transfer, ended_by_close: bool) {
        let started = t.started;
        let (name, part) = (t.name.clone(), t.part.part_path().to_path_buf());
        match t.part.finish().await {
            Ok(finished) => {
                self.record_saved(&name, started, finished, ended_by_close).await;
            }
            Err(e) => self.disk_failure(&name, &e, Some(part), None).await,
        }
    }

    pub(super) async fn start_cf(&mut self, chosen_by_auto: bool) -> Result<(), End> {
        self.mode = Mode::Cf(CfDecoder::new(chosen_by_auto));
        self.announce("cf").await;
        let greeting = self.shared.settings.greeting.clone();
        self.write_to_device(greeting.as_bytes()).await?;
        self.text(Direction::Out, greeting).await;
        Ok(())
    }
}
