//! `/push`: files the console sends to a native-frames device, mirroring the
//! upload rules (see docs/protocol.md, "Console to device"): FILE_BEGIN with
//! RESUME, data from where the device says, within its window, FILE_END, a
//! rewind whenever it asks, done at SAVED. The decisions are the pure rules of
//! `protocol::sending`; this sends the frames and tells the front ends. A push
//! cut by a disconnect is started again (resuming) when the device is back.

use super::*;
use crate::protocol::frames::{AckStatus, Message};
use crate::protocol::sending::{OnAck, Sending};

/// FILE_DATA payload when the device did not say its `max_frame`.
const DEFAULT_CHUNK: usize = 1024;
/// The largest FILE_DATA payload the console sends.
const MAX_CHUNK: usize = 64 * 1024;
/// A device that does not answer FILE_BEGIN within this does not take files.
pub(super) const BEGIN_ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// With the device's window full and no PROGRESS for this long, half a window
/// more goes out (its PROGRESS may have been lost), as devices do for uploads.
const WINDOW_STALL: Duration = Duration::from_secs(2);

pub(super) struct Push {
    file_id: u32,
    name: String,
    data: Bytes,
    crc32: u32,
    sending: Sending,
    begun: Instant,
    last_progress: Instant,
    /// The device's last answer.
    last_ack: Instant,
}

impl Session {
    /// Starts sending `data` as `name` (a `/push`, or one resumed on reconnect).
    pub(super) async fn start_push(&mut self, name: String, data: Bytes) -> Result<(), End> {
        let Mode::Frames(state) = &mut self.mode else {
            return Ok(());
        };
        let file_id = state.next_push_id;
        state.next_push_id = state.next_push_id.wrapping_add(1).max(1);
        let size = data.len() as u64;
        let push = Push {
            file_id,
            crc32: crc32fast::hash(&data),
            sending: Sending::new(size, state.window),
            name: name.clone(),
            data,
            begun: Instant::now(),
            last_progress: Instant::now(),
            last_ack: Instant::now(),
        };
        state.pushes.push(push);
        self.send_message(&Message::FileBegin {
            file_id,
            size: Some(size),
            name: name.clone(),
            resume: true,
        })
        .await?;
        self.shared
            .emit(EventKind::FilePushStarted {
                conn: self.conn,
                device: self.device.clone(),
                name,
                size,
                via: "frames".into(),
            })
            .await;
        Ok(())
    }

    /// A push has data or an end to send now.
    pub(super) fn push_ready(&self) -> bool {
        let Mode::Frames(state) = &self.mode else {
            return false;
        };
        state
            .pushes
            .iter()
            .any(|p| p.sending.end_due() || p.sending.next_chunk(1).is_some())
    }

    /// Sends one frame of the first push that has one: a FILE_DATA, or its FILE_END.
    pub(super) async fn push_step(&mut self) -> Result<(), End> {
        let Mode::Frames(state) = &mut self.mode else {
            return Ok(());
        };
        let chunk = state
            .device_max_frame
            .map_or(DEFAULT_CHUNK, |m| m.saturating_sub(12))
            .clamp(1, MAX_CHUNK);
        let Some(push) = state
            .pushes
            .iter_mut()
            .find(|p| p.sending.end_due() || p.sending.next_chunk(1).is_some())
        else {
            return Ok(());
        };
        let message = match push.sending.next_chunk(chunk) {
            Some((offset, len)) => {
                push.sending.sent(len);
                let start = offset as usize;
                Message::FileData {
                    file_id: push.file_id,
                    offset,
                    data: push.data.slice(start..start + len),
                }
            }
            None => {
                push.sending.end_sent();
                Message::FileEnd {
                    file_id: push.file_id,
                    crc32: push.crc32,
                }
            }
        };
        let progress = (push.last_progress.elapsed() >= PROGRESS_EVERY).then(|| {
            push.last_progress = Instant::now();
            (push.name.clone(), push.sending.acked)
        });
        self.send_message(&message).await?;
        if let Some((name, bytes)) = progress {
            self.shared
                .emit(EventKind::FilePushProgress {
                    conn: self.conn,
                    device: self.device.clone(),
                    name,
                    bytes,
                })
                .await;
        }
        Ok(())
    }

    /// The device's FILE_ACK for a pushed file.
    pub(super) async fn push_ack(&mut self, file_id: u32, status: AckStatus, value: u64, detail: &str) {
        let Mode::Frames(state) = &mut self.mode else {
            return;
        };
        let Some(at) = state.pushes.iter().position(|p| p.file_id == file_id) else {
            return; // an answer for a push already over
        };
        state.pushes[at].last_ack = Instant::now();
        match state.pushes[at].sending.on_ack(status, value, detail) {
            OnAck::Continue => {}
            OnAck::Saved => {
                let push = state.pushes.remove(at);
                self.shared
                    .emit(EventKind::FilePushed {
                        conn: self.conn,
                        device: self.device.clone(),
                        name: push.name,
                        size: push.data.len() as u64,
                        seconds: push.begun.elapsed().as_secs_f64(),
                    })
                    .await;
            }
            OnAck::Failed(reason) => {
                let push = state.pushes.remove(at);
                self.push_failed(push.name, reason).await;
            }
        }
    }

    /// When the oldest unanswered FILE_BEGIN times out.
    pub(super) fn push_deadline(&self) -> Option<Instant> {
        let Mode::Frames(state) = &self.mode else {
            return None;
        };
        let unanswered = state
            .pushes
            .iter()
            .filter(|p| !p.sending.started)
            .map(|p| p.begun + BEGIN_ANSWER_WITHIN);
        let stalled = state
            .pushes
            .iter()
            .filter(|p| p.sending.window_full())
            .map(|p| p.last_ack + WINDOW_STALL);
        unanswered.chain(stalled).min()
    }

    pub(super) async fn push_timeout(&mut self) {
        let Mode::Frames(state) = &mut self.mode else {
            return;
        };
        let now = Instant::now();
        for push in &mut state.pushes {
            if push.sending.window_full() && now >= push.last_ack + WINDOW_STALL {
                push.sending.window_stalled();
                push.last_ack = now;
            }
        }
        let (late, rest): (Vec<Push>, Vec<Push>) = std::mem::take(&mut state.pushes)
            .into_iter()
            .partition(|p| !p.sending.started && now >= p.begun + BEGIN_ANSWER_WITHIN);
        state.pushes = rest;
        for push in late {
            let reason = format!(
                "the device did not answer FILE_BEGIN within {} s (does its firmware take files? benchlink device and the SDKs do)",
                BEGIN_ANSWER_WITHIN.as_secs()
            );
            self.push_failed(push.name, reason).await;
        }
    }

    async fn push_failed(&mut self, name: String, reason: String) {
        self.shared
            .emit(EventKind::FilePushFailed {
                conn: self.conn,
                device: self.device.clone(),
                name,
                reason,
            })
            .await;
    }

    /// The connection ends with pushes under way: each fails for now and is kept,
    /// to be started again (resuming) when the device is back under its name.
    pub(super) async fn keep_pushes(&mut self, end: &End) {
        let Mode::Frames(state) = &mut self.mode else {
            return;
        };
        let pushes = std::mem::take(&mut state.pushes);
        for push in pushes {
            let kept = matches!(end, End::Stopped | End::Closed | End::Kicked)
                .then_some(false)
                .unwrap_or_else(|| self.shared.keep_push(&self.device, &push.name, push.data.clone()));
            let again = if kept { "; sent again when it is back" } else { "" };
            let reason = format!("interrupted ({}){again}", end.reason());
            self.push_failed(push.name, reason).await;
        }
    }

    /// After WELCOME: pushes an earlier connection of this device left unfinished.
    pub(super) async fn resume_pushes(&mut self) -> Result<(), End> {
        for (name, data) in self.shared.take_pushes(&self.device) {
            self.start_push(name, data).await?;
        }
        Ok(())
    }
}
