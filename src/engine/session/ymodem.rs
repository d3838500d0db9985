//! YMODEM on a session: `/rz` (and `ymodem://` listeners) receive files from
//! the device into the received folder; `/sz` sends files to it. The protocol
//! itself is the pure machines of `protocol::ymodem`; this runs them: bytes in,
//! their answers out, files through the same sink as every other protocol.
//! When the batch ends the link goes back to what it was (lines).

use super::*;
use crate::protocol::ymodem::{OutFile, Receiver, RxEvent, Sender, TxEvent};

/// Receiving: the machine, the file being written, and the mode to go back to.
pub(super) struct YmodemRx {
    machine: Receiver,
    file: Option<Transfer>,
    saved: u32,
    previous: Box<Mode>,
}

/// Sending: the machine, the files' names and sizes, and the mode to go back to.
pub(super) struct YmodemTx {
    machine: Sender,
    files: Vec<(String, u64)>,
    /// The file under way: its index and when its header was taken.
    current: Option<(usize, Instant)>,
    last_progress: Instant,
    previous: Box<Mode>,
}

impl Session {
    /// `/rz`: from now on the link carries YMODEM from the device.
    pub(super) async fn start_ymodem_receive(&mut self) -> Result<(), End> {
        if matches!(self.mode, Mode::Frames(_)) {
            return Ok(());
        }
        Box::pin(self.flush_partial_line()).await;
        let (machine, first) = Receiver::start(Instant::now().into_std());
        let previous = std::mem::replace(&mut self.mode, Mode::Undecided);
        self.mode = Mode::YmodemRx(Box::new(YmodemRx {
            machine,
            file: None,
            saved: 0,
            previous: Box::new(previous),
        }));
        self.ymodem_rx_events(first).await
    }

    /// `/sz`: sends these files by YMODEM-1K.
    pub(super) async fn start_ymodem_send(&mut self, files: Vec<OutFile>) -> Result<(), End> {
        if matches!(self.mode, Mode::Frames(_)) {
            return Ok(());
        }
        Box::pin(self.flush_partial_line()).await;
        let names = files
            .iter()
            .map(|f| (f.name.clone(), f.data.len() as u64))
            .collect();
        let previous = std::mem::replace(&mut self.mode, Mode::Undecided);
        self.mode = Mode::YmodemTx(Box::new(YmodemTx {
            machine: Sender::new(files, Instant::now().into_std()),
            files: names,
            current: None,
            last_progress: Instant::now(),
            previous: Box::new(previous),
        }));
        // The receiver asked already (its `C` arrived, as text, before `/sz`):
        // start now rather than wait for it to ask again.
        if self.last_byte == Some(crate::protocol::ymodem::CRC_REQUEST)
            && self.last_heard.elapsed() < crate::protocol::ymodem::ANSWER_TIMEOUT
        {
            return self.ymodem_bytes(b"C").await;
        }
        Ok(())
    }

    /// When the running YMODEM machine wants its timeout.
    pub(super) fn ymodem_deadline(&self) -> Option<Instant> {
        let at = match &self.mode {
            Mode::YmodemRx(rx) => rx.machine.deadline(),
            Mode::YmodemTx(tx) => tx.machine.deadline(),
            _ => None,
        }?;
        Some(Instant::from_std(at))
    }

    pub(super) async fn ymodem_timeout(&mut self) -> Result<(), End> {
        let now = Instant::now().into_std();
        match &mut self.mode {
            Mode::YmodemRx(rx) => {
                let events = rx.machine.on_timeout(now);
                self.ymodem_rx_events(events).await
            }
            Mode::YmodemTx(tx) => {
                let events = tx.machine.on_timeout(now);
                self.ymodem_tx_events(events).await
            }
            _ => Ok(()),
        }
    }

    pub(super) async fn ymodem_bytes(&mut self, data: &[u8]) -> Result<(), End> {
        let now = Instant::now().into_std();
        match &mut self.mode {
            Mode::YmodemRx(rx) => {
                let damaged_before = rx.machine.damaged();
                let events = rx.machine.on_bytes(data, now);
                let damaged = rx.machine.damaged() - damaged_before;
                self.stats
                    .crc_errors
                    .fetch_add(damaged, std::sync::atomic::Ordering::Relaxed);
                self.ymodem_rx_events(events).await
            }
            Mode::YmodemTx(tx) => {
                let events = tx.machine.on_bytes(data, now);
                self.ymodem_tx_events(events).await
            }
            _ => Ok(()),
        }
    }

    async fn ymodem_rx_events(&mut self, events: Vec<RxEvent>) -> Result<(), End> {
        for event in events {
            match event {
                RxEvent::Send(bytes) => self.write_to_device(&bytes).await?,
                RxEvent::FileStart { name, size } => self.ymodem_file_start(&name, size).await,
                RxEvent::Data(bytes) => self.ymodem_file_data(bytes).await,
                RxEvent::FileEnd => {
                    if let Mode::YmodemRx(rx) = &mut self.mode
                        && let Some(t) = rx.file.take()
                    {
                        rx.saved += 1;
                        self.save(t, false).await;
                    }
                }
                RxEvent::BatchEnd => {
                    let saved = match &self.mode {
                        Mode::YmodemRx(rx) => rx.saved,
                        _ => 0,
                    };
                    self.ymodem_done(
                        "/rz",
                        format!(
                            "YMODEM: received {saved} file(s) from {}; back to text",
                            self.device
                        ),
                    )
                    .await;
                }
                RxEvent::Abort(why) => {
                    if let Mode::YmodemRx(rx) = &mut self.mode
                        && let Some(t) = rx.file.take()
                    {
                        self.keep_failed(t, format!("YMODEM stopped: {why}")).await;
                    }
                    let message = format!("{}: YMODEM receive stopped: {why}", self.device);
                    self.shared.emit(EventKind::Error { message }).await;
                    self.ymodem_done("/rz", String::new()).await;
                }
            }
        }
        Ok(())
    }

    async fn ymodem_file_start(&mut self, raw_name: &str, size: Option<u64>) {
        // A path in block 0 (lrzsz sends what it was given): the file name only.
        let base = raw_name.rsplit(['/', '\\']).next().unwrap_or(raw_name);
        let name = crate::engine::names::sanitize(base, "ymodem.bin");
        if size.is_some_and(|s| s > self.shared.settings.max_file_size) {
            let message = format!(
                "{}: {name} is larger than --max-file-size; it is not kept",
                self.device
            );
            self.shared.emit(EventKind::Error { message }).await;
            return;
        }
        // Files run through the same checks and sink as every protocol's.
        let Some(part) = self.start_file(&name, size).await else {
            return;
        };
        if let Mode::YmodemRx(rx) = &mut self.mode {
            rx.file = Some(Transfer::new(part, name, size, Instant::now()));
        }
    }

    async fn ymodem_file_data(&mut self, bytes: Bytes) {
        let limit = self.shared.settings.max_file_size;
        let Mode::YmodemRx(rx) = &mut self.mode else {
            return;
        };
        let Some(t) = rx.file.as_mut() else {
            return; // refused (too large): dropped
        };
        if t.part.len() + bytes.len() as u64 > limit {
            if let Some(t) = rx.file.take() {
                self.keep_failed(t, "larger than --max-file-size".into()).await;
            }
            return;
        }
        give_back_turn_before(&mut self.turn, &t.part, bytes.len());
        if let Err(e) = t.part.write(bytes).await {
            let (name, part) = (t.name.clone(), t.part.part_path().to_path_buf());
            rx.file = None;
            return self.disk_failure(&name, &e, Some(part), None).await;
        }
        if let Some(due) = progress_due(t) {
            let event = self.progress_event(due);
            self.shared.emit(event).await;
        }
    }

    async fn ymodem_tx_events(&mut self, events: Vec<TxEvent>) -> Result<(), End> {
        for event in events {
            let Mode::YmodemTx(tx) = &mut self.mode else {
                return Ok(());
            };
            let name_of = |i: usize| tx.files.get(i).cloned().unwrap_or_default();
            match event {
                TxEvent::Send(bytes) => self.write_to_device(&bytes).await?,
                TxEvent::FileStart(i) => {
                    tx.current = Some((i, Instant::now()));
                    let (name, size) = name_of(i);
                    self.shared
                        .emit(EventKind::FilePushStarted {
                            conn: self.conn,
                            device: self.device.clone(),
                            name,
                            size,
                            via: "ymodem".into(),
                        })
                        .await;
                }
                TxEvent::Progress(bytes) => {
                    if tx.last_progress.elapsed() >= PROGRESS_EVERY
                        && let Some((i, _)) = tx.current
                    {
                        tx.last_progress = Instant::now();
                        let (name, _) = name_of(i);
                        self.shared
                            .emit(EventKind::FilePushProgress {
                                conn: self.conn,
                                device: self.device.clone(),
                                name,
                                bytes,
                            })
                            .await;
                    }
                }
                TxEvent::FileDone(i) => {
                    let seconds = tx.current.take().map_or(0.0, |(_, t)| t.elapsed().as_secs_f64());
                    let (name, size) = name_of(i);
                    self.shared
                        .emit(EventKind::FilePushed {
                            conn: self.conn,
                            device: self.device.clone(),
                            name,
                            size,
                            seconds,
                        })
                        .await;
                }
                TxEvent::Done => {
                    let n = tx.files.len();
                    self.ymodem_done(
                        "/sz",
                        format!("YMODEM: sent {n} file(s) to {}; back to text", self.device),
                    )
                    .await;
                }
                TxEvent::Abort(why) => {
                    let name = match tx.current {
                        Some((i, _)) => name_of(i).0,
                        None => name_of(0).0,
                    };
                    self.shared
                        .emit(EventKind::FilePushFailed {
                            conn: self.conn,
                            device: self.device.clone(),
                            name,
                            reason: why.clone(),
                        })
                        .await;
                    let message = format!("{}: YMODEM send stopped: {why}", self.device);
                    self.shared.emit(EventKind::Error { message }).await;
                    self.ymodem_done("/sz", String::new()).await;
                }
            }
        }
        Ok(())
    }

    /// Back to the mode the link had before (lines, for a `ymodem://` listener).
    async fn ymodem_done(&mut self, command: &str, said: String) {
        let previous = match std::mem::replace(&mut self.mode, Mode::Undecided) {
            Mode::YmodemRx(rx) => rx.previous,
            Mode::YmodemTx(tx) => tx.previous,
            other => Box::new(other),
        };
        self.mode = match *previous {
            Mode::Undecided => Mode::Lines(LineDecoder::new(self.shared.settings.max_line)),
            other => other,
        };
        if !said.is_empty() {
            self.shared
                .emit(EventKind::Reply {
                    command: command.into(),
                    ok: true,
                    text: said,
                    devices: None,
                    id: None,
                })
                .await;
        }
    }

    /// A YMODEM file cut by the end of the connection is kept as `.part`.
    pub(super) async fn keep_ymodem_file(&mut self, end: &End) {
        if let Mode::YmodemRx(rx) = &mut self.mode
            && let Some(t) = rx.file.take()
        {
            self.keep_failed(t, format!("YMODEM interrupted ({})", end.reason()))
                .await;
        }
        if let Mode::YmodemTx(tx) = &mut self.mode
            && let Some((i, _)) = tx.current.take()
        {
            let name = tx.files.get(i).map(|f| f.0.clone()).unwrap_or_default();
            self.shared
                .emit(EventKind::FilePushFailed {
                    conn: self.conn,
                    device: self.device.clone(),
                    name,
                    reason: format!("interrupted ({})", end.reason()),
                })
                .await;
        }
    }
}
