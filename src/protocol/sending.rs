//! The sending end of a native-frames file, as pure rules (no I/O): the mirror
//! of [`super::receiving`]. The sender announces the file with FILE_BEGIN and
//! the RESUME flag, waits for the receiver to say where to start (FILE_ACK
//! RESUME, with what it holds), sends FILE_DATA within the receiver's window,
//! ends with FILE_END, rewinds whenever the receiver asks (RESUME), and is done
//! at SAVED. The console uses it for `/push`; a device could too.

use super::frames::AckStatus;

/// Rewinds in a row without the receiver's held bytes growing before the
/// sender gives up (a link that loses every frame).
pub const MAX_STALLED_REWINDS: u32 = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sending {
    pub size: u64,
    /// The next offset to send.
    pub next: u64,
    /// What the receiver said it holds (RESUME, PROGRESS).
    pub acked: u64,
    /// The receiver's window (its HELLO `window`): at most this many bytes sent
    /// and not acknowledged.
    pub window: Option<u64>,
    /// The receiver answered FILE_BEGIN: data may flow.
    pub started: bool,
    /// FILE_END sent for the data sent so far.
    pub ended: bool,
    stalled_rewinds: u32,
}

/// What an answer from the receiver means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnAck {
    /// Go on (send from `next`).
    Continue,
    /// The receiver saved the whole file.
    Saved,
    /// The receiver will not take it, or it arrived wrong: the reason.
    Failed(String),
}

impl Sending {
    pub fn new(size: u64, window: Option<u64>) -> Self {
        Self {
            size,
            next: 0,
            acked: 0,
            window,
            started: false,
            ended: false,
            stalled_rewinds: 0,
        }
    }

    pub fn on_ack(&mut self, status: AckStatus, value: u64, detail: &str) -> OnAck {
        match status {
            AckStatus::Resume => {
                if value > self.size {
                    return OnAck::Failed(format!(
                        "the device holds {value} bytes of a {}-byte file",
                        self.size
                    ));
                }
                if self.started && value <= self.acked {
                    self.stalled_rewinds += 1;
                    if self.stalled_rewinds > MAX_STALLED_REWINDS {
                        return OnAck::Failed(format!(
                            "{MAX_STALLED_REWINDS} rewinds without progress: the link loses every frame"
                        ));
                    }
                } else {
                    self.stalled_rewinds = 0;
                }
                self.started = true;
                self.next = value;
                self.acked = value;
                self.ended = false;
                OnAck::Continue
            }
            AckStatus::Progress => {
                self.acked = self.acked.max(value.min(self.size));
                OnAck::Continue
            }
            AckStatus::Saved => OnAck::Saved,
            AckStatus::CrcMismatch => OnAck::Failed(format!("the device's CRC differs: {detail}")),
            AckStatus::SizeMismatch => OnAck::Failed(format!("the device counted another size: {detail}")),
            AckStatus::Refused => OnAck::Failed(if detail.is_empty() {
                format!("the device refused it (code {value})")
            } else {
                format!("the device refused it: {detail}")
            }),
            AckStatus::Other(code) => OnAck::Failed(format!("the device answered status {code}")),
        }
    }

    /// The next FILE_DATA to send (offset and length, at most `max`), if the
    /// window allows one now.
    pub fn next_chunk(&self, max: usize) -> Option<(u64, usize)> {
        if !self.started || self.next >= self.size {
            return None;
        }
        let mut len = (self.size - self.next).min(max as u64);
        if let Some(window) = self.window {
            let in_flight = self.next.saturating_sub(self.acked);
            let room = window.saturating_sub(in_flight);
            if room == 0 {
                return None;
            }
            len = len.min(room);
        }
        Some((self.next, len as usize))
    }

    /// The window is full: nothing more may go out until the receiver acknowledges.
    pub fn window_full(&self) -> bool {
        self.started && self.next < self.size && self.next_chunk(1).is_none()
    }

    /// No PROGRESS came for a while with the window full (a lost PROGRESS must
    /// not stall the file): half a window more may go out.
    pub fn window_stalled(&mut self) {
        if let Some(window) = self.window {
            self.acked = self.acked.max(self.next.saturating_sub(window / 2));
        }
    }

    pub fn sent(&mut self, len: usize) {
        self.next += len as u64;
    }

    /// All data is sent and FILE_END is not: send it now.
    pub fn end_due(&self) -> bool {
        self.started && !self.ended && self.next >= self.size
    }

    pub fn end_sent(&mut self) {
        self.ended = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_flows_before_the_receiver_says_where_to_start() {
        let mut s = Sending::new(10, None);
        assert_eq!(s.next_chunk(4), None);
        assert!(!s.end_due());
        assert_eq!(s.on_ack(AckStatus::Resume, 0, ""), OnAck::Continue);
        assert_eq!(s.next_chunk(4), Some((0, 4)));
    }

    #[test]
    fn a_resume_starts_from_what_the_receiver_holds() {
        let mut s = Sending::new(10, None);
        s.on_ack(AckStatus::Resume, 6, "");
        assert_eq!(s.next_chunk(100), Some((6, 4)));
        s.sent(4);
        assert!(s.end_due());
        s.end_sent();
        assert!(!s.end_due());
        assert_eq!(s.on_ack(AckStatus::Saved, 10, "cam/f"), OnAck::Saved);
    }

    #[test]
    fn the_window_holds_data_back_until_progress() {
        let mut s = Sending::new(100, Some(10));
        s.on_ack(AckStatus::Resume, 0, "");
        assert_eq!(s.next_chunk(8), Some((0, 8)));
        s.sent(8);
        assert_eq!(s.next_chunk(8), Some((8, 2)));
        s.sent(2);
        assert_eq!(s.next_chunk(8), None, "10 in flight");
        s.on_ack(AckStatus::Progress, 5, "");
        assert_eq!(s.next_chunk(8), Some((10, 5)));
    }

    #[test]
    fn a_lost_progress_does_not_stall_the_file() {
        let mut s = Sending::new(100, Some(10));
        s.on_ack(AckStatus::Resume, 0, "");
        s.sent(10);
        assert!(s.window_full());
        s.window_stalled();
        assert_eq!(s.next_chunk(8), Some((10, 5)), "half a window more");
    }

    #[test]
    fn a_gap_rewinds_and_an_end_with_bytes_missing_is_resent() {
        let mut s = Sending::new(12, None);
        s.on_ack(AckStatus::Resume, 0, "");
        s.sent(12);
        s.end_sent();
        // The frame at 4 was lost: the receiver asks from 4.
        assert_eq!(s.on_ack(AckStatus::Resume, 4, "gap"), OnAck::Continue);
        assert_eq!(s.next_chunk(100), Some((4, 8)));
        assert!(!s.end_due(), "the end is sent again after the data");
        s.sent(8);
        assert!(s.end_due());
    }

    #[test]
    fn endless_rewinds_without_progress_give_up() {
        let mut s = Sending::new(100, None);
        s.on_ack(AckStatus::Resume, 10, "");
        for _ in 0..MAX_STALLED_REWINDS {
            assert_eq!(s.on_ack(AckStatus::Resume, 10, "gap"), OnAck::Continue);
        }
        assert!(matches!(s.on_ack(AckStatus::Resume, 10, "gap"), OnAck::Failed(_)));
    }

    #[test]
    fn refusals_and_mismatches_fail_with_the_reason() {
        let mut s = Sending::new(5, None);
        assert!(
            matches!(s.on_ack(AckStatus::Refused, 3, "disk full"), OnAck::Failed(r) if r.contains("disk full"))
        );
        assert!(matches!(
            s.on_ack(AckStatus::CrcMismatch, 0, "x"),
            OnAck::Failed(_)
        ));
        assert!(
            matches!(s.on_ack(AckStatus::Resume, 6, ""), OnAck::Failed(_)),
            "more than the file"
        );
    }
}
