//! The receiving end of a native-frames file, as pure rules (no I/O): where a
//! FILE_DATA goes, when to ask the sender to rewind (ZMODEM's ZRPOS), when a
//! FILE_END means "repair" and when "check and save", and when a PROGRESS is
//! due. The console's session executes what these decide; any receiver of the
//! protocol can use the same rules.

use super::frames::AckStatus;

/// One file being received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiving {
    /// Bytes held, contiguous from offset 0.
    pub held: u64,
    /// The size FILE_BEGIN announced, if any.
    pub size: Option<u64>,
    /// Largest file accepted.
    pub limit: u64,
    /// The sender's flow-control window (HELLO `window`), if any.
    pub window: Option<u64>,
    /// The offset already answered with RESUME: one answer per gap.
    pub gap_reported: Option<u64>,
    /// What the last PROGRESS or RESUME told the sender it holds.
    pub acked: u64,
}

/// What to do with one FILE_DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnData {
    /// A frame before it was lost: answer RESUME at this offset (once per gap)
    /// and drop data until the sender rewinds.
    AskRewind(u64),
    /// Held already, or past a gap already reported: drop it, say nothing.
    Drop,
    /// Append the data from this index on (what overlaps is held already).
    Append { skip: usize },
    /// More than the announced size: SIZE_MISMATCH with what is held.
    PastSize,
    /// Larger than the limit: REFUSED.
    TooLarge,
}

/// What a FILE_END means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEnd {
    /// Bytes are missing: answer RESUME at this offset, every time, so a rewind
    /// whose frames were lost again is repaired again.
    Repair(u64),
    /// All there: check the size and CRC, then save.
    Finish,
}

impl Receiving {
    pub fn new(held: u64, size: Option<u64>, limit: u64, window: Option<u64>) -> Self {
        Self {
            held,
            size,
            limit,
            window,
            gap_reported: None,
            acked: held,
        }
    }

    pub fn on_data(&mut self, offset: u64, len: usize) -> OnData {
        let held = self.held;
        if offset > held {
            if self.gap_reported == Some(held) {
                return OnData::Drop;
            }
            self.gap_reported = Some(held);
            return OnData::AskRewind(held);
        }
        let skip = (held - offset).min(len as u64) as usize;
        let new = (len - skip) as u64;
        if new == 0 {
            return OnData::Drop;
        }
        if self.size.is_some_and(|s| held + new > s) {
            return OnData::PastSize;
        }
        if held + new > self.limit {
            return OnData::TooLarge;
        }
        self.gap_reported = None;
        OnData::Append { skip }
    }

    /// `n` bytes were appended. True when a PROGRESS is due: the held bytes grew
    /// by half a window since the last one (protocol 1.1 flow control).
    pub fn appended(&mut self, n: u64) -> bool {
        self.held += n;
        let due = self
            .window
            .is_some_and(|w| self.held - self.acked.min(self.held) >= (w / 2).max(1));
        if due {
            self.acked = self.held;
        }
        due
    }

    pub fn on_end(&mut self) -> OnEnd {
        if self.size.is_some_and(|s| self.held < s) || self.gap_reported.is_some() {
            self.gap_reported = Some(self.held);
            return OnEnd::Repair(self.held);
        }
        OnEnd::Finish
    }
}

/// Why a finished file is not saved: the answer's status, value and detail,
/// and the reason for the `file_failed` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub status: AckStatus,
    pub value: u64,
    pub detail: String,
    pub reason: String,
}

/// Checks a finished file against what the sender announced and computed.
/// `resumed`: part of the data came over an earlier connection, which may not
/// have been this sender's, so the data's CRC is not told.
pub fn judge(
    announced: Option<u64>,
    size: u64,
    crc32: u32,
    sender_crc32: u32,
    resumed: bool,
) -> Option<Mismatch> {
    if let Some(announced) = announced.filter(|&a| a != size) {
        let reason = format!("size mismatch: {announced} bytes announced, {size} received");
        return Some(Mismatch {
            status: AckStatus::SizeMismatch,
            value: size,
            detail: reason.clone(),
            reason,
        });
    }
    if crc32 == sender_crc32 {
        return None;
    }
    let reason = format!("CRC mismatch: the device says {sender_crc32:08x}, the data is {crc32:08x}");
    Some(if resumed {
        Mismatch {
            status: AckStatus::CrcMismatch,
            value: 0,
            detail: "CRC mismatch: the CRCs differ; send the file again from the start".into(),
            reason,
        }
    } else {
        Mismatch {
            status: AckStatus::CrcMismatch,
            value: u64::from(crc32),
            detail: reason.clone(),
            reason,
        }
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rx(size: Option<u64>) -> Receiving {
        Receiving::new(0, size, 1 << 30, None)
    }

    #[test]
    fn data_in_order_is_appended() {
        let mut r = rx(Some(10));
        assert_eq!(r.on_data(0, 4), OnData::Append { skip: 0 });
        r.appended(4);
        assert_eq!(r.on_data(4, 6), OnData::Append { skip: 0 });
        r.appended(6);
        assert_eq!(r.on_end(), OnEnd::Finish);
    }

    #[test]
    fn a_gap_is_reported_once_then_repaired_by_a_rewind() {
        let mut r = rx(Some(12));
        r.on_data(0, 4);
        r.appended(4);
        // The frame at 4 was lost: the one at 8 shows the gap.
        assert_eq!(r.on_data(8, 4), OnData::AskRewind(4));
        // More frames past the gap: dropped without another answer.
        assert_eq!(r.on_data(12, 4), OnData::Drop);
        // The sender rewinds; an overlapping frame keeps only what is new.
        assert_eq!(r.on_data(2, 6), OnData::Append { skip: 2 });
        r.appended(4);
        assert_eq!(r.gap_reported, None);
        assert_eq!(r.on_data(8, 4), OnData::Append { skip: 0 });
    }

    #[test]
    fn every_end_with_bytes_missing_is_answered_with_a_repair() {
        let mut r = rx(Some(10));
        r.on_data(0, 4);
        r.appended(4);
        assert_eq!(r.on_end(), OnEnd::Repair(4));
        // The rewound frames were lost again: the next FILE_END is repaired again.
        assert_eq!(r.on_end(), OnEnd::Repair(4));
        assert_eq!(r.on_data(4, 6), OnData::Append { skip: 0 });
        r.appended(6);
        assert_eq!(r.on_end(), OnEnd::Finish);
    }

    #[test]
    fn a_resume_starts_from_what_is_held() {
        let mut r = Receiving::new(300, Some(600), 1 << 30, None);
        assert_eq!(r.on_data(0, 300), OnData::Drop, "all held already");
        assert_eq!(r.on_data(300, 300), OnData::Append { skip: 0 });
    }

    #[test]
    fn too_much_data_is_told() {
        let mut r = rx(Some(4));
        assert_eq!(r.on_data(0, 5), OnData::PastSize);
        let mut r = Receiving::new(0, None, 8, None);
        assert_eq!(r.on_data(0, 9), OnData::TooLarge);
    }

    #[test]
    fn progress_every_half_window() {
        let mut r = Receiving::new(0, None, 1 << 30, Some(1000));
        assert!(!r.appended(400));
        assert!(r.appended(100), "500 bytes: half the window");
        assert!(!r.appended(499));
        assert!(r.appended(1));
        let mut none = rx(None);
        assert!(!none.appended(1 << 20), "no window, no PROGRESS");
    }

    #[test]
    fn judge_tells_size_then_crc_and_hides_a_resumed_crc() {
        assert_eq!(judge(Some(10), 10, 7, 7, false), None);
        assert_eq!(judge(None, 10, 7, 7, true), None);
        let m = judge(Some(10), 9, 7, 7, false).unwrap();
        assert_eq!((m.status, m.value), (AckStatus::SizeMismatch, 9));
        let m = judge(Some(10), 10, 0xabcd, 7, false).unwrap();
        assert_eq!((m.status, m.value), (AckStatus::CrcMismatch, 0xabcd));
        let m = judge(Some(10), 10, 0xabcd, 7, true).unwrap();
        assert_eq!((m.status, m.value), (AckStatus::CrcMismatch, 0));
        assert!(!m.detail.contains("abcd"), "{}", m.detail);
    }

    proptest! {
        /// Whatever order, loss and duplication the frames arrive in, what is
        /// appended is exactly the file's bytes in order, and once every byte came
        /// after the last gap report, FILE_END says finish.
        #[test]
        fn any_arrival_order_appends_the_file_in_order(
            chunks in proptest::collection::vec((0usize..64, 1usize..32), 1..80),
        ) {
            let file: Vec<u8> = (0..256u32).map(|i| i as u8).collect();
            let mut r = Receiving::new(0, Some(file.len() as u64), 1 << 30, None);
            let mut out = Vec::new();
            let deliver = |r: &mut Receiving, out: &mut Vec<u8>, offset: usize, len: usize| {
                let len = len.min(file.len() - offset.min(file.len()));
                if len == 0 { return; }
                if let OnData::Append { skip } = r.on_data(offset as u64, len) {
                    out.extend_from_slice(&file[offset + skip..offset + len]);
                    r.appended((len - skip) as u64);
                }
            };
            for (start, len) in chunks {
                deliver(&mut r, &mut out, start * 4, len);
            }
            // The sender obeys the repair until the end says finish.
            let mut rounds = 0;
            while let OnEnd::Repair(from) = r.on_end() {
                deliver(&mut r, &mut out, from as usize, 64);
                rounds += 1;
                prop_assert!(rounds < 100);
            }
            prop_assert_eq!(out, file);
        }
    }
}
