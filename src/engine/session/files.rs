//! Saving what a session received, for every protocol: the journal record, a
//! failed file's `.part`, room for new parts, and a full disk.

use super::*;

impl Session {
    /// Starts a file that arrives on this session (cf, a carved image, YMODEM):
    /// the descriptor check, room among the device's `.part` files, the `.part`
    /// itself and `file_started`. None when it cannot be kept (said already).
    pub(super) async fn start_file(&mut self, name: &str, size: Option<u64>) -> Option<PartFile> {
        if !self.shared.room_for_a_file() {
            let e =
                io::Error::other("the console is short of file descriptors (too many files open at once)");
            self.disk_failure(name, &e, None, size).await;
            return None;
        }
        self.make_room_for_part().await;
        let part = match PartFile::create(self.folder(), name.to_string()).await {
            Ok(part) => part.counted_in(&self.shared.open_files),
            Err(e) => {
                self.disk_failure(name, &e, None, size).await;
                return None;
            }
        };
        self.shared
            .emit(EventKind::FileStarted {
                conn: self.conn,
                device: self.device.clone(),
                name: name.to_string(),
                size,
                resumed_from: None,
            })
            .await;
        Some(part)
    }

    /// Gives a finished file its final name, records it in received.jsonl and emits
    /// `file_saved`. Returns the final path.
    pub(super) async fn record_saved(
        &mut self,
        name: &str,
        started: Instant,
        finished: Finished,
        ended_by_close: bool,
    ) -> Option<PathBuf> {
        let part = finished.part_path.clone();
        let path = match place(finished.part_path, self.folder(), name.to_string()).await {
            Ok(p) => p,
            Err(e) => {
                // Complete and checked: kept as `.part` rather than lost.
                let kept = part.display().to_string();
                self.shared
                    .emit(EventKind::FileFailed {
                        conn: self.conn,
                        device: self.device.clone(),
                        name: name.to_string(),
                        reason: format!("cannot give it its final name: {e}; it is complete in {kept}"),
                        part: Some(kept),
                    })
                    .await;
                return None;
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        let saved_name = path
            .file_name()
            .map_or_else(|| name.to_string(), |n| n.to_string_lossy().into_owned());
        let shown = path.display().to_string();
        self.shared
            .journal
            .saved(ReceivedRecord {
                time: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
                device: self.device.clone(),
                peer: self.peer.to_string(),
                name: saved_name.clone(),
                path: shown.clone(),
                size: finished.size,
                crc32: finished.crc32,
                seconds,
                protocol: self.protocol.into(),
            })
            .await;
        self.shared
            .emit(EventKind::FileSaved {
                conn: self.conn,
                device: self.device.clone(),
                name: saved_name,
                path: shown,
                size: finished.size,
                crc32: finished.crc32,
                seconds,
                ended_by_close,
            })
            .await;
        Some(path)
    }

    pub(super) async fn keep_failed(&mut self, t: Transfer, reason: String) {
        let part = if t.part.is_empty() {
            // Nothing to resume from: an empty `.part` would only pile up.
            let path = t.part.part_path().to_path_buf();
            drop(t.part);
            let _ = sink::discard(sink::meta_path(&path)).await;
            let _ = sink::discard(path).await;
            None
        } else {
            t.part.keep().await.ok().map(|p| p.display().to_string())
        };
        let reason = match &part {
            Some(p) => format!("{reason}; what arrived is kept as {p}"),
            None => reason,
        };
        self.shared
            .emit(EventKind::FileFailed {
                conn: self.conn,
                device: self.device.clone(),
                name: t.name,
                reason,
                part,
            })
            .await;
    }

    /// Keeps at most `--max-parts` `.part` files in this device's folder: before a
    /// new one is made, the oldest not in use go, with their sidecars, each with a
    /// `part_removed` event. A device that begins files and never ends them can then
    /// not fill the disk with them.
    pub(super) async fn make_room_for_part(&mut self) {
        let folder = self.folder();
        let parts = tokio::task::spawn_blocking(move || sink::list_parts(&folder))
            .await
            .unwrap_or_default();
        let max = self.shared.settings.max_parts;
        let mut excess = (parts.len() + 1).saturating_sub(max);
        for part in parts {
            if excess == 0 {
                break;
            }
            if self.shared.part_in_use(&part) {
                continue;
            }
            let _ = sink::discard(sink::meta_path(&part)).await;
            if sink::discard(part.clone()).await.is_ok() {
                excess -= 1;
                self.shared
                    .emit(EventKind::PartRemoved {
                        device: self.device.clone(),
                        path: part.display().to_string(),
                        reason: format!("the oldest of more than {max} unfinished files (--max-parts)"),
                    })
                    .await;
            }
        }
    }

    /// A disk error fails this one transfer, once (one `file_failed`); the console
    /// and other devices go on. Its `.part` (and sidecar) is removed so a full disk
    /// is not kept full by it, unless `resumable_rest` bytes would fit again (then
    /// the device can resume it once the disk has room). A link found where our
    /// file should be is also an `error` event: someone planted it.
    pub(super) async fn disk_failure(
        &mut self,
        name: &str,
        e: &io::Error,
        part: Option<PathBuf>,
        resumable_rest: Option<u64>,
    ) {
        if safe_fs::is_link(e) {
            let message = format!(
                "cannot write {name} from {} in {}: {e}",
                self.device,
                self.folder().display()
            );
            self.shared.emit(EventKind::Error { message }).await;
        }
        let mut kept = None;
        if let Some(part) = part {
            let room = safe_fs::free_space(&self.folder());
            if resumable_rest.is_some_and(|rest| room.is_some_and(|free| free > rest)) {
                kept = Some(part.display().to_string());
            } else {
                let _ = sink::discard(sink::meta_path(&part)).await;
                let _ = sink::discard(part).await;
            }
        }
        let reason = match &kept {
            Some(p) => format!("cannot store it: {e}; what arrived is kept as {p} for a resume"),
            None => format!("cannot store it: {e}"),
        };
        self.shared
            .emit(EventKind::FileFailed {
                conn: self.conn,
                device: self.device.clone(),
                name: name.to_string(),
                reason,
                part: kept,
            })
            .await;
    }
}
