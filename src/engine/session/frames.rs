//! The native frame protocol on a session: HELLO/WELCOME, texts, and named,
//! CRC-checked, resumable files (several at once, told apart by file_id).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{End, Mode, Session, Transfer, give_back_turn_before, progress_due};
use crate::engine::event::{Direction, EventKind};
use crate::engine::names::{numbered, sanitize};
use crate::engine::ratelimit::{RateLimit, more};
use crate::engine::safe_fs;
use crate::engine::sink::{PartFile, discard, meta_path};
use crate::protocol::frames::{
    AckStatus, Decoded, ERR_AUTH, ERR_OVERSIZE, ERR_PROTOCOL, FrameDecoder, Message, OVERHEAD, kind_name,
    refused,
};
use crate::protocol::receiving::{Mismatch, OnData, OnEnd, Receiving, judge};

/// The REFUSED code for a disk error: full (try later) or anything else.
fn disk_code(e: &std::io::Error) -> u64 {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => refused::DISK_FULL,
        _ => refused::DISK_ERROR,
    }
}

/// Whether bytes that arrive first on an auto-chosen cf connection are a frame
/// header with a valid header CRC (`Some(true)`), surely not one (`Some(false)`),
/// or too few to tell (`None`).
pub(super) fn late_frames_start(buf: &[u8]) -> Option<bool> {
    let magic = crate::protocol::frames::MAGIC;
    let n = buf.len().min(magic.len());
    if buf[..n] != magic[..n] {
        return Some(false);
    }
    if buf.len() < crate::protocol::frames::HEADER_LEN {
        return None;
    }
    Some(
        FrameDecoder::new(PRE_HELLO_MAX_FRAME)
            .bytes_to_complete(buf)
            .is_some(),
    )
}

/// The protocol version WELCOME announces.
pub const PROTOCOL_VERSION: &str = "1.1";

/// A partial frame that gets no byte for this long is abandoned and the bytes
/// after its magic are scanned again: no healthy link pauses inside a frame, and
/// a byte lost inside one must not stall the link.
pub const FRAME_STALL: std::time::Duration = std::time::Duration::from_millis(250);

/// The largest first frame (before HELLO is accepted): a HELLO never needs more.
pub const PRE_HELLO_MAX_FRAME: usize = 4096;
/// At most one warning per connection this often (the rest are counted).
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Files one connection may have open at once: each holds a file descriptor.
pub const MAX_OPEN_FILES: usize = 8;
/// File ids one connection may have the console remember (open or refused).
const MAX_FILE_IDS: usize = 64;
/// A connection on the frame protocol must send a whole frame within this.
pub const IDENTIFY_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a takeover waits for the connection it replaces to let go of the name.
const TAKEOVER_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

/// How many numbered `.part` files a resume looks through for a match.
const RESUME_CANDIDATES: u32 = 16;

pub(crate) struct FramesState {
    decoder: FrameDecoder,
    /// HELLO seen, or the first other frame (then the peer-IP name stays).
    identified: bool,
    transfers: HashMap<u32, FrameFile>,
    /// Unknown file_ids already answered with REFUSED (bounded).
    answered_unknown: std::collections::HashSet<u32>,
    /// Files saved on this connection, by file_id: a repeated FILE_END (its SAVED
    /// was lost) gets the same answer again (bounded).
    saved: HashMap<u32, SavedAnswer>,
    /// Frames dropped because their payload CRC failed.
    bad_frames: u64,
    /// Wire size of the last frame decoded: the next read's size.
    last_frame: usize,
    /// Warnings about this connection's frames: one a second, with a count.
    warnings: RateLimit,
    /// When this connection started speaking frames: the identify deadline runs
    /// from here (a late HELLO may come long after the connection opened).
    pub(crate) started: Instant,
    /// HELLO's `window` (1.1): the device keeps at most this many bytes of file
    /// data unacknowledged, and the console acknowledges with FILE_ACK PROGRESS.
    /// Files the console pushes keep to the same window.
    pub(super) window: Option<u64>,
    /// HELLO's `max_frame`: the largest payload the device takes (pushes).
    pub(super) device_max_frame: Option<usize>,
    /// Files the console sends to the device (`/push`).
    pub(super) pushes: Vec<super::push::Push>,
    pub(super) next_push_id: u32,
}

impl FramesState {
    /// True the first time an unknown file_id is seen. Bounded, so a device sending
    /// data for endless made-up ids costs no memory.
    fn answer_unknown(&mut self, file_id: u32) -> bool {
        if self.answered_unknown.len() >= MAX_FILE_IDS {
            self.answered_unknown.clear();
        }
        self.answered_unknown.insert(file_id)
    }

    /// How much to read next: the rest of the frame under way, else the size of
    /// the last frame seen (at least `floor`), so one read holds one whole frame.
    pub(crate) fn read_size(&self, buf: &[u8], floor: usize) -> usize {
        match self.decoder.bytes_to_complete(buf) {
            Some(rest) if rest > 0 => rest,
            _ => self.last_frame.max(floor),
        }
    }

    fn open_files(&self) -> usize {
        self.transfers
            .values()
            .filter(|f| matches!(f, FrameFile::Active { .. }))
            .count()
    }

    /// Holds the start of a frame still waiting for bytes.
    pub(crate) fn holds_partial(&self, buf: &[u8]) -> bool {
        self.decoder.holds_partial(buf)
    }

    pub(crate) fn receiving(&self) -> bool {
        self.transfers
            .values()
            .any(|f| matches!(f, FrameFile::Active { .. }))
    }
}

// A connection holds a handful of these at most: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
enum FrameFile {
    Active {
        transfer: Transfer,
        /// The `.part`'s sidecar, which lets a later connection resume it.
        meta: PathBuf,
        /// Continues a `.part` an earlier connection wrote: its CRC is not this
        /// connection's to learn (see CRC_MISMATCH).
        resumed: bool,
        /// Where data goes, gaps, repairs and PROGRESS: the protocol's pure rules.
        rx: Receiving,
    },
    /// Refused or failed (with its REFUSED code): its data is dropped, and its
    /// FILE_END is answered with the same refusal.
    Refused(u64),
    /// A FILE_BEGIN+RESUME for a name and size this device has saved already: the
    /// console answered "I hold all of it" and compares the CRC at FILE_END.
    Held {
        name: String,
        size: u64,
        copies: Vec<PathBuf>,
    },
}

/// What a saved file's FILE_END was answered with.
#[derive(Debug, Clone)]
struct SavedAnswer {
    crc32: u32,
    size: u64,
    relative: String,
}

/// Sidecar of a `.part` (`.<part name>.meta`): what a resume must match.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct PartMeta {
    device: String,
    name: String,
    size: Option<u64>,
}

impl Session {
    pub(super) fn start_frames(&mut self) {
        self.mode = Mode::Frames(Box::new(FramesState {
            // Before a device is identified it may send one frame no larger than a
            // HELLO needs: unauthenticated connections cannot hold max_frame each.
            decoder: FrameDecoder::new(PRE_HELLO_MAX_FRAME.min(self.shared.settings.max_frame)),
            identified: false,
            transfers: HashMap::new(),
            answered_unknown: Default::default(),
            saved: HashMap::new(),
            bad_frames: 0,
            last_frame: 0,
            warnings: RateLimit::new(WARN_EVERY),
            window: None,
            device_max_frame: None,
            pushes: Vec::new(),
            next_push_id: 1,
            started: Instant::now(),
        }));
    }

    pub(super) async fn send_message(&mut self, message: &Message) -> Result<(), End> {
        let mut out = BytesMut::new();
        message.encode(&mut out);
        self.write_to_device(&out).await
    }

    async fn ack(&mut self, file_id: u32, status: AckStatus, value: u64, detail: String) -> Result<(), End> {
        self.send_message(&Message::FileAck {
            file_id,
            status,
            value,
            detail,
        })
        .await
    }

    /// The partial frame in the buffer got no byte for [`FRAME_STALL`]: it is
    /// abandoned, and the frames that arrived after the loss are decoded.
    pub(super) async fn abandon_partial_frame(&mut self) -> Result<(), End> {
        if let Mode::Frames(state) = &mut self.mode
            && state.decoder.abandon_partial(&mut self.buf)
        {
            state.bad_frames += 1;
            if let Some(n) = state.warnings.allow(std::time::Instant::now()) {
                tracing::warn!(
                    "{}: abandoned a frame that stopped arriving (bytes lost on the way?){}",
                    self.device,
                    more(n)
                );
            }
        }
        self.on_frames().await
    }

    /// Decodes every whole frame in the buffer. Payloads are split off the buffer
    /// without copying, so file data goes to disk as it arrived.
    pub(super) async fn on_frames(&mut self) -> Result<(), End> {
        loop {
            let Mode::Frames(state) = &mut self.mode else {
                return Ok(());
            };
            let Some(decoded) = state.decoder.decode(&mut self.buf) else {
                break;
            };
            match decoded {
                Decoded::Frame(frame) => {
                    state.last_frame = frame.payload.len() + OVERHEAD;
                    let kind = frame.kind;
                    match Message::from_frame(frame) {
                        Ok(message) => self.on_message(message).await?,
                        Err(e) => {
                            if let Some(n) = state.warnings.allow(std::time::Instant::now()) {
                                tracing::warn!(
                                    "{}: bad {} frame: {e}{}",
                                    self.device,
                                    kind_name(kind),
                                    more(n)
                                );
                            }
                            self.send_message(&Message::Error {
                                code: ERR_PROTOCOL,
                                message: e.to_string(),
                            })
                            .await?;
                        }
                    }
                }
                Decoded::BadCrc { kind, len } => {
                    state.bad_frames += 1;
                    self.stats.crc_errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(n) = state.warnings.allow(std::time::Instant::now()) {
                        tracing::warn!(
                            "{}: dropped a {} frame of {len} bytes with a bad CRC ({} so far){}",
                            self.device,
                            kind_name(kind),
                            state.bad_frames,
                            more(n)
                        );
                    }
                }
                Decoded::Oversize { len } => {
                    let max = state.decoder.max_frame();
                    let message = format!("frame of {len} bytes is larger than max_frame {max}");
                    let _ = self
                        .send_message(&Message::Error {
                            code: ERR_OVERSIZE,
                            message: message.clone(),
                        })
                        .await;
                    return Err(End::Failed(format!("sent a {message}; connection closed")));
                }
            }
        }
        let idle = matches!(&self.mode, Mode::Frames(s) if !s.receiving());
        if idle && self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
        Ok(())
    }

    async fn on_message(&mut self, message: Message) -> Result<(), End> {
        let Mode::Frames(state) = &mut self.mode else {
            return Ok(());
        };
        if !state.identified {
            state.identified = true;
            let result = self.identify(message).await;
            if let Mode::Frames(state) = &mut self.mode {
                state.decoder.set_max_frame(self.shared.settings.max_frame);
            }
            return result;
        }
        match message {
            Message::Text(text) => {
                for piece in crate::text::pieces(&text, self.shared.settings.max_line) {
                    let raw = bytes::Bytes::copy_from_slice(piece.as_bytes());
                    self.text_with_raw(Direction::In, piece.to_string(), Some(raw))
                        .await;
                }
            }
            Message::FileBegin {
                file_id,
                size,
                name,
                resume,
            } => self.file_begin(file_id, size, &name, resume).await?,
            Message::FileData {
                file_id,
                offset,
                data,
            } => self.file_data(file_id, offset, data).await?,
            Message::FileEnd { file_id, crc32 } => self.file_end(file_id, crc32).await?,
            Message::Ping(payload) => self.send_message(&Message::Pong(payload)).await?,
            Message::Bye(reason) => return Err(End::Goodbye(reason)),
            Message::Error { code, message } => {
                let message = format!("{} reported error {code}: {message}", self.device);
                self.shared.emit(EventKind::Error { message }).await;
            }
            // The device answers a file the console pushes.
            Message::FileAck {
                file_id,
                status,
                value,
                detail,
            } => self.push_ack(file_id, status, value, &detail).await,
            // Not meant for the console, or unknown: ignored, as the protocol says.
            Message::Hello(_) | Message::Welcome(_) | Message::Pong(_) | Message::Unknown { .. } => {}
        }
        Ok(())
    }

    /// The first frame: HELLO names the device (and must carry the token if one is
    /// set); any other frame leaves the peer-IP name and is then handled as usual.
    async fn identify(&mut self, message: Message) -> Result<(), End> {
        let hello = match &message {
            Message::Hello(pairs) => Some(pairs.clone()),
            _ => None,
        };
        if let Some(expected) = self.shared.settings.token.clone() {
            let given = hello
                .as_ref()
                .and_then(|pairs| pairs.iter().find(|(k, _)| k == "token").map(|(_, v)| v.clone()))
                .unwrap_or_default();
            if !constant_time_eq::constant_time_eq(given.as_bytes(), expected.as_bytes()) {
                let _ = self
                    .send_message(&Message::Error {
                        code: ERR_AUTH,
                        message: "a valid token=... in HELLO is required".into(),
                    })
                    .await;
                let allowed = self.shared.token_refusals().allow(std::time::Instant::now());
                if let Some(n) = allowed {
                    let message = format!(
                        "refused {}: missing or wrong token in HELLO{}",
                        self.peer,
                        more(n)
                    );
                    self.shared.emit(EventKind::Error { message }).await;
                }
                return Err(End::Failed("refused: missing or wrong token".into()));
            }
        }
        if let Some(pairs) = hello {
            let window = pairs
                .iter()
                .find(|(k, _)| k == "window")
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                .filter(|&w| w > 0);
            let device_max_frame = pairs
                .iter()
                .find(|(k, _)| k == "max_frame")
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .filter(|&m| m > 12);
            if let Mode::Frames(state) = &mut self.mode {
                state.window = window;
                state.device_max_frame = device_max_frame;
            }
            if let Some((_, id)) = pairs.iter().find(|(k, _)| k == "id")
                && !id.trim().is_empty()
            {
                let base = crate::engine::names::device_folder(id);
                self.take_over(&base).await;
                if let Some(name) = self.shared.registry().rename_by_id(self.conn, &base) {
                    self.device = name;
                }
            }
            self.send_message(&Message::Welcome(vec![
                (
                    "server".into(),
                    format!("benchlink {}", env!("CARGO_PKG_VERSION")),
                ),
                ("max_frame".into(), self.shared.settings.max_frame.to_string()),
                ("name".into(), self.device.clone()),
                ("protocol".into(), PROTOCOL_VERSION.into()),
            ]))
            .await?;
            self.announce("frames").await;
            // Files pushed to this device when its last connection dropped.
            return Box::pin(self.resume_pushes()).await;
        }
        self.announce("frames").await;
        Box::pin(self.on_message(message)).await
    }

    /// Protocol 1.1 takeover, as MQTT does with a client id: the live connection that
    /// holds this id (often a half-open one the console has not noticed is gone) is
    /// told to say BYE and close, and this one waits until the name is free. A holder
    /// that does not let go in time keeps it; this connection is then named `#n`.
    async fn take_over(&mut self, id: &str) {
        let Some(holder) = self.shared.registry().held_by_id(id, self.conn) else {
            return;
        };
        let (done, released) = tokio::sync::oneshot::channel();
        let by = self.peer.clone();
        let _ = tokio::time::timeout(TAKEOVER_WITHIN, async move {
            if holder
                .send(crate::engine::registry::SessionCommand::Replace { by, done })
                .await
                .is_ok()
            {
                // Dropped by the old session once it has left the registry.
                let _ = released.await;
            }
        })
        .await;
    }

    async fn file_begin(
        &mut self,
        file_id: u32,
        size: Option<u64>,
        raw_name: &str,
        resume: bool,
    ) -> Result<(), End> {
        let name = sanitize(raw_name, &format!("file-{file_id}"));
        self.drop_transfer(file_id, "replaced by a new FILE_BEGIN with the same file_id")
            .await;
        let open = match &self.mode {
            Mode::Frames(state) => state.open_files(),
            _ => 0,
        };
        if open >= MAX_OPEN_FILES {
            let why = format!("{MAX_OPEN_FILES} files are already open on this connection; finish one first");
            self.refuse(file_id, &name, refused::TOO_MANY_OPEN_FILES, why)
                .await?;
            return Ok(());
        }
        if !self.shared.room_for_a_file() {
            let why =
                "the console is short of file descriptors (too many files open at once); try again later";
            return self.refuse(file_id, &name, refused::BUSY, why.into()).await;
        }
        let limit = self.shared.settings.max_file_size;
        if size.is_some_and(|s| s > limit) {
            let why = format!(
                "larger than the {} limit (--max-file-size)",
                crate::text::size(limit)
            );
            self.refuse(file_id, &name, refused::TOO_LARGE, why).await?;
            return Ok(());
        }
        if let Mode::Frames(state) = &mut self.mode {
            state.saved.remove(&file_id);
        }
        let resumed = self.resumable_part(&name, size, resume).await;
        if resumed.is_none()
            && resume
            && let Some(size) = size
        {
            // Saved already (its SAVED was lost, or the device restarted): "I hold
            // all of it"; the CRC at FILE_END decides.
            let copies = saved_copies(self.folder(), name.clone(), size).await;
            if !copies.is_empty() {
                if let Mode::Frames(state) = &mut self.mode {
                    state
                        .transfers
                        .insert(file_id, FrameFile::Held { name, size, copies });
                }
                return self
                    .ack(file_id, AckStatus::Resume, size, "saved already".into())
                    .await;
            }
        }
        if let Some(size) = size {
            let need = size.saturating_sub(resumed.as_ref().map_or(0, PartFile::len));
            let dir = self.shared.settings.dir.clone();
            let free = tokio::task::spawn_blocking(move || safe_fs::free_space(&dir))
                .await
                .ok()
                .flatten();
            if let Some(free) = free.filter(|&free| need > free) {
                if let Some(part) = &resumed {
                    self.shared.release_part(part.part_path());
                }
                let why = format!(
                    "{} more are needed but the disk holds only {} free; free some space and send it again",
                    crate::text::size(need),
                    crate::text::size(free)
                );
                return self.refuse(file_id, &name, refused::DISK_FULL, why).await;
            }
        }
        let opened = match resumed {
            Some(part) => Ok(part),
            None => {
                self.make_room_for_part().await;
                PartFile::create(self.folder(), name.clone()).await
            }
        };
        let part = match opened {
            Ok(part) => part.counted_in(&self.shared.open_files),
            Err(e) => {
                self.disk_failure(&name, &e, None, None).await;
                return self
                    .refused_quietly(file_id, disk_code(&e), format!("cannot store it: {e}"))
                    .await;
            }
        };
        self.shared.claim_part(part.part_path());
        let meta = meta_path(part.part_path());
        let record = PartMeta {
            device: self.device.clone(),
            name: name.clone(),
            size,
        };
        let meta_for_write = meta.clone();
        let written = tokio::task::spawn_blocking(move || match serde_json::to_vec(&record) {
            Ok(bytes) => safe_fs::write(&meta_for_write, &bytes),
            Err(e) => Err(std::io::Error::other(e)),
        })
        .await;
        if let Ok(Err(e)) = written
            && safe_fs::is_link(&e)
        {
            // Received all the same; only a later resume of it is given up.
            let message = format!("{name} from {} cannot be resumed later: {e}", self.device);
            self.shared.emit(EventKind::Error { message }).await;
        }
        let held = part.len();
        self.shared
            .emit(EventKind::FileStarted {
                conn: self.conn,
                device: self.device.clone(),
                name: name.clone(),
                size,
                resumed_from: (held > 0).then_some(held),
            })
            .await;
        let limit = self.shared.settings.max_file_size;
        if let Mode::Frames(state) = &mut self.mode {
            let rx = Receiving::new(held, size, limit, state.window);
            state.transfers.insert(
                file_id,
                FrameFile::Active {
                    transfer: Transfer::new(part, name, size, Instant::now()),
                    meta,
                    resumed: held > 0,
                    rx,
                },
            );
        }
        if resume {
            self.ack(file_id, AckStatus::Resume, held, String::new()).await?;
        }
        Ok(())
    }

    /// An interrupted `.part` of this device's file with the same name and size,
    /// not in use by another transfer.
    async fn resumable_part(&mut self, name: &str, size: Option<u64>, resume: bool) -> Option<PartFile> {
        if !resume {
            return None;
        }
        let wanted = PartMeta {
            device: self.device.clone(),
            name: name.to_string(),
            size,
        };
        for n in 0..RESUME_CANDIDATES {
            let part = self.folder().join(format!("{}.part", numbered(name, n)));
            let meta = meta_path(&part);
            let matches = tokio::task::spawn_blocking(move || {
                safe_fs::read(&meta)
                    .ok()
                    .and_then(|bytes| serde_json::from_slice::<PartMeta>(&bytes).ok())
            })
            .await
            .ok()
            .flatten()
            .is_some_and(|found| found == wanted);
            if !matches || !self.shared.claim_part(&part) {
                continue;
            }
            // The claim is kept for the transfer, so two connections of one device
            // can never append to the same `.part`.
            match PartFile::resume(part.clone()).await {
                Ok(p) if size.is_none_or(|s| p.len() <= s) => return Some(p),
                Err(e) if safe_fs::is_link(&e) => {
                    self.shared.release_part(&part);
                    let message = format!("not resuming {name} from {}: {e}", self.device);
                    self.shared.emit(EventKind::Error { message }).await;
                }
                _ => self.shared.release_part(&part),
            }
        }
        None
    }

    /// Refuses a file with a reason code (see [`refused`]) and a sentence for people.
    async fn refuse(&mut self, file_id: u32, name: &str, code: u64, why: String) -> Result<(), End> {
        self.shared
            .emit(EventKind::FileFailed {
                conn: self.conn,
                device: self.device.clone(),
                name: name.to_string(),
                reason: format!("refused: {why}"),
                part: None,
            })
            .await;
        self.refused_quietly(file_id, code, why).await
    }

    /// Answers REFUSED for a file whose `file_failed` was already emitted.
    async fn refused_quietly(&mut self, file_id: u32, code: u64, why: String) -> Result<(), End> {
        // Remembered so its data is dropped quietly, as long as few ids are held.
        if let Mode::Frames(state) = &mut self.mode
            && state.transfers.len() < MAX_FILE_IDS
        {
            state.transfers.insert(file_id, FrameFile::Refused(code));
        }
        self.ack(file_id, AckStatus::Refused, code, why).await
    }

    async fn file_data(&mut self, file_id: u32, offset: u64, mut data: bytes::Bytes) -> Result<(), End> {
        let Mode::Frames(state) = &mut self.mode else {
            return Ok(());
        };
        let Some(FrameFile::Active { transfer, rx, .. }) = state.transfers.get_mut(&file_id) else {
            // A refused file's data is dropped quietly (it was answered). An unknown
            // file_id means its FILE_BEGIN was lost: say so once, so the device can
            // start the file again instead of waiting for an answer.
            if !state.transfers.contains_key(&file_id) && state.answer_unknown(file_id) {
                let detail = "unknown file_id (its FILE_BEGIN was lost?): send FILE_BEGIN again".to_string();
                return self
                    .ack(file_id, AckStatus::Refused, refused::UNKNOWN_FILE_ID, detail)
                    .await;
            }
            return Ok(());
        };
        let expected = rx.held;
        match rx.on_data(offset, data.len()) {
            OnData::Drop => return Ok(()),
            // A frame before this one was lost (bad CRC): the device rewinds.
            OnData::AskRewind(from) => {
                self.stats.rewinds.fetch_add(1, Ordering::Relaxed);
                return self.ack(file_id, AckStatus::Resume, from, "gap".into()).await;
            }
            OnData::Append { skip } => {
                let _ = data.split_to(skip); // bytes already held
            }
            verdict @ (OnData::PastSize | OnData::TooLarge) => {
                let past = verdict == OnData::PastSize;
                let why = if past {
                    "more data than the announced size"
                } else {
                    "larger than --max-file-size"
                };
                self.drop_transfer(file_id, why).await;
                let code = if past {
                    refused::PAST_SIZE
                } else {
                    refused::TOO_LARGE
                };
                if let Mode::Frames(state) = &mut self.mode {
                    state.transfers.insert(file_id, FrameFile::Refused(code));
                }
                // SIZE_MISMATCH says where the console is (what it holds); REFUSED its code.
                return if past {
                    self.ack(file_id, AckStatus::SizeMismatch, expected, why.into())
                        .await
                } else {
                    self.ack(file_id, AckStatus::Refused, code, why.into()).await
                };
            }
        }
        let appended = data.len() as u64;
        give_back_turn_before(&mut self.turn, &transfer.part, data.len());
        if let Err(e) = transfer.part.write(data).await {
            let name = transfer.name.clone();
            let part = transfer.part.part_path().to_path_buf();
            let rest = transfer.size.map(|s| s.saturating_sub(expected));
            state.transfers.remove(&file_id);
            self.shared.release_part(&part);
            self.disk_failure(&name, &e, Some(part), rest).await;
            return self
                .refused_quietly(file_id, disk_code(&e), format!("cannot store it: {e}"))
                .await;
        }
        // 1.1 flow control: PROGRESS each time the held bytes grew by half a window.
        let progress = rx.appended(appended);
        let held = rx.held;
        if let Some(event) = progress_due(transfer) {
            let event = self.progress_event(event);
            self.shared.emit(event).await;
        }
        if progress {
            self.ack(file_id, AckStatus::Progress, held, String::new())
                .await?;
        }
        Ok(())
    }

    async fn file_end(&mut self, file_id: u32, crc32: u32) -> Result<(), End> {
        let Mode::Frames(state) = &mut self.mode else {
            return Ok(());
        };
        if let Some(FrameFile::Active { rx, .. }) = state.transfers.get_mut(&file_id)
            && let OnEnd::Repair(held) = rx.on_end()
        {
            // Bytes are missing (the last frames were lost, a rewind we asked for
            // is on its way, or the re-sent frame was lost again): repair rather
            // than fail, every time. The device rewinds to `held` and ends the
            // file again; a duplicate of a rewind it is already doing it ignores.
            self.stats.rewinds.fetch_add(1, Ordering::Relaxed);
            return self
                .ack(file_id, AckStatus::Resume, held, "missing data".into())
                .await;
        }
        let Mode::Frames(state) = &mut self.mode else {
            return Ok(());
        };
        let (transfer, meta, resumed) = match state.transfers.remove(&file_id) {
            Some(FrameFile::Active {
                transfer,
                meta,
                resumed,
                ..
            }) => (transfer, meta, resumed),
            // Every FILE_END is answered (1.1), so a device whose answer was lost
            // can ask again: a refused file gets its refusal again.
            Some(FrameFile::Refused(code)) => {
                state.transfers.insert(file_id, FrameFile::Refused(code));
                let detail = format!("refused earlier: {}", refused::name(code));
                return self.ack(file_id, AckStatus::Refused, code, detail).await;
            }
            Some(FrameFile::Held { name, size, copies }) => {
                return self.end_held(file_id, crc32, name, size, copies).await;
            }
            None => {
                // Saved already on this connection: its SAVED was lost.
                if let Some(saved) = state.saved.get(&file_id).cloned() {
                    if saved.crc32 == crc32 {
                        return self
                            .ack(file_id, AckStatus::Saved, saved.size, saved.relative)
                            .await;
                    }
                    let detail = "the CRCs differ from the file saved under this file_id".to_string();
                    return self.ack(file_id, AckStatus::CrcMismatch, 0, detail).await;
                }
                // Never begun: its FILE_BEGIN was lost.
                let detail = "unknown file_id (its FILE_BEGIN was lost?): send the file again".to_string();
                return self
                    .ack(file_id, AckStatus::Refused, refused::UNKNOWN_FILE_ID, detail)
                    .await;
            }
        };
        let part_path = transfer.part.part_path().to_path_buf();
        self.shared.release_part(&part_path);
        let (name, size, started) = (transfer.name.clone(), transfer.size, transfer.started);
        let finished = match transfer.part.finish().await {
            Ok(f) => f,
            Err(e) => {
                self.disk_failure(&name, &e, Some(part_path), None).await;
                return self
                    .refused_quietly(file_id, disk_code(&e), format!("cannot store it: {e}"))
                    .await;
            }
        };
        if let Some(Mismatch {
            status,
            value,
            detail,
            reason,
        }) = judge(size, finished.size, finished.crc32, crc32, resumed)
        {
            let _ = discard(finished.part_path).await;
            let _ = discard(meta).await;
            self.shared
                .emit(EventKind::FileFailed {
                    conn: self.conn,
                    device: self.device.clone(),
                    name,
                    reason,
                    part: None,
                })
                .await;
            return self.ack(file_id, status, value, detail).await;
        }
        let saved_size = finished.size;
        match self.record_saved(&name, started, finished, false).await {
            Some(path) => {
                let _ = discard(meta).await;
                let relative = self.relative(&path);
                self.remember_saved(
                    file_id,
                    SavedAnswer {
                        crc32,
                        size: saved_size,
                        relative: relative.clone(),
                    },
                );
                self.ack(file_id, AckStatus::Saved, saved_size, relative).await
            }
            None => {
                self.ack(
                    file_id,
                    AckStatus::Refused,
                    refused::DISK_ERROR,
                    "cannot store it".into(),
                )
                .await
            }
        }
    }

    /// FILE_END for a file the console said it held: SAVED with the existing path
    /// when a saved copy has that CRC (nothing new is written), else RESUME 0 and
    /// the file is received again as a new one.
    async fn end_held(
        &mut self,
        file_id: u32,
        crc32: u32,
        name: String,
        size: u64,
        copies: Vec<PathBuf>,
    ) -> Result<(), End> {
        let found = tokio::task::spawn_blocking(move || {
            copies
                .into_iter()
                .find(|path| file_crc32(path).ok() == Some(crc32))
        })
        .await
        .ok()
        .flatten();
        if let Some(path) = found {
            let relative = self.relative(&path);
            self.remember_saved(
                file_id,
                SavedAnswer {
                    crc32,
                    size,
                    relative: relative.clone(),
                },
            );
            return self.ack(file_id, AckStatus::Saved, size, relative).await;
        }
        self.file_begin(file_id, Some(size), &name, false).await?;
        let started = matches!(
            &self.mode,
            Mode::Frames(state) if matches!(state.transfers.get(&file_id), Some(FrameFile::Active { .. }))
        );
        if started {
            let detail = "the saved copy differs: send the file again from 0".to_string();
            self.ack(file_id, AckStatus::Resume, 0, detail).await?;
        }
        Ok(())
    }

    /// A saved file's answer, kept for a repeated FILE_END (bounded).
    fn remember_saved(&mut self, file_id: u32, answer: SavedAnswer) {
        if let Mode::Frames(state) = &mut self.mode {
            if state.saved.len() >= MAX_FILE_IDS {
                state.saved.clear();
            }
            state.saved.insert(file_id, answer);
        }
    }

    /// A path under --dir as the device is told it: relative to --dir.
    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.shared.settings.dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// Ends a transfer that will not complete on this connection; its `.part` and
    /// sidecar stay so the device can resume it later.
    async fn drop_transfer(&mut self, file_id: u32, why: &str) {
        let Mode::Frames(state) = &mut self.mode else {
            return;
        };
        if let Some(FrameFile::Active { transfer, .. }) = state.transfers.remove(&file_id) {
            self.shared.release_part(transfer.part.part_path());
            self.keep_failed(transfer, why.to_string()).await;
        }
    }

    /// At close: every unfinished file is kept for resume.
    pub(super) async fn keep_frame_transfers(&mut self, end: &End) {
        let Mode::Frames(state) = &mut self.mode else {
            return;
        };
        let ids: Vec<u32> = state.transfers.keys().copied().collect();
        let why = format!("interrupted ({}); kept so the device can resume it", end.reason());
        for id in ids {
            self.drop_transfer(id, &why).await;
        }
    }
}

/// Saved files in `folder` that could be `name` of `size` bytes: `name` itself and
/// its numbered variants (`name (n).ext`), real files only, newest first, a few.
async fn saved_copies(folder: PathBuf, name: String, size: u64) -> Vec<PathBuf> {
    tokio::task::spawn_blocking(move || {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            return Vec::new();
        };
        let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| is_copy_of(&e.file_name().to_string_lossy(), &name))
            .filter_map(|e| {
                // symlink_metadata: a link is never taken for a saved file.
                let meta = std::fs::symlink_metadata(e.path()).ok()?;
                let modified = meta.modified().ok()?;
                (meta.is_file() && meta.len() == size).then(|| (modified, e.path()))
            })
            .collect();
        found.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        found.into_iter().take(SAVED_COPIES).map(|(_, p)| p).collect()
    })
    .await
    .unwrap_or_default()
}

/// How many saved copies of one name a FILE_BEGIN+RESUME compares at most.
const SAVED_COPIES: usize = 16;

/// True for `name` and for `numbered(name, n)` with any n.
fn is_copy_of(candidate: &str, name: &str) -> bool {
    if candidate == name {
        return true;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, Some(ext)),
        _ => (name, None),
    };
    let rest = match ext {
        Some(ext) => candidate.strip_suffix(ext).and_then(|r| r.strip_suffix('.')),
        None => Some(candidate),
    };
    rest.and_then(|r| r.strip_prefix(stem))
        .and_then(|r| r.strip_prefix(" ("))
        .and_then(|r| r.strip_suffix(')'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The CRC-32 of a whole file, read without following a link.
fn file_crc32(path: &Path) -> std::io::Result<u32> {
    use std::io::Read;
    let mut file = safe_fs::open(std::fs::OpenOptions::new().read(true), path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_the_name_and_its_numbered_variants() {
        for (candidate, name) in [
            ("a.bmp", "a.bmp"),
            ("a (1).bmp", "a.bmp"),
            ("a (27).bmp", "a.bmp"),
            ("README (3)", "README"),
            ("x.tar (2).gz", "x.tar.gz"),
        ] {
            assert!(is_copy_of(candidate, name), "{candidate} of {name}");
        }
        for (candidate, name) in [
            ("a (x).bmp", "a.bmp"),
            ("a ().bmp", "a.bmp"),
            ("ab.bmp", "a.bmp"),
            ("a.bmp.part", "a.bmp"),
            ("a (1).png", "a.bmp"),
            ("b (1).bmp", "a.bmp"),
        ] {
            assert!(!is_copy_of(candidate, name), "{candidate} is not {name}");
        }
    }
}
