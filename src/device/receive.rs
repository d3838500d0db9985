//! Files the console pushes to `benchlink device` (`/push`): saved into the
//! device's folder by the protocol's pure receiving rules (the console's own),
//! as `NAME.part` while they arrive, resumed from that `.part` after a
//! reconnect, checked by CRC-32 before SAVED, never overwriting, and never
//! opened through a link (as the console's own sink).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::engine::safe_fs;
use crate::protocol::frames::{AckStatus, Message};
use crate::protocol::receiving::{OnData, OnEnd, Receiving, judge};

/// Files at once.
const MAX_OPEN: usize = 4;

struct Incoming {
    name: String,
    part: PathBuf,
    rx: Receiving,
    resumed: bool,
}

pub struct Receiver {
    dir: PathBuf,
    window: Option<u64>,
    limit: u64,
    open: HashMap<u32, Incoming>,
}

/// An answer for the console, and what to print.
pub struct Reply {
    pub ack: Option<Message>,
    pub said: Option<String>,
}

fn ack(file_id: u32, status: AckStatus, value: u64, detail: impl Into<String>) -> Option<Message> {
    Some(Message::FileAck {
        file_id,
        status,
        value,
        detail: detail.into(),
    })
}

impl Receiver {
    pub fn new(dir: PathBuf, window: Option<u64>) -> Self {
        Self {
            dir,
            window,
            limit: 1 << 30,
            open: HashMap::new(),
        }
    }

    /// FILE_BEGIN / FILE_DATA / FILE_END from the console; None for other messages.
    pub async fn on_message(&mut self, message: &Message) -> Option<Reply> {
        Some(match message {
            Message::FileBegin {
                file_id,
                size,
                name,
                resume,
            } => self.begin(*file_id, *size, name, *resume).await,
            Message::FileData {
                file_id,
                offset,
                data,
            } => self.data(*file_id, *offset, data).await,
            Message::FileEnd { file_id, crc32 } => self.end(*file_id, *crc32).await,
            _ => return None,
        })
    }

    async fn begin(&mut self, file_id: u32, size: Option<u64>, raw: &str, resume: bool) -> Reply {
        let name = crate::engine::names::sanitize(raw, &format!("file-{file_id}"));
        if self.open.len() >= MAX_OPEN && !self.open.contains_key(&file_id) {
            return Reply {
                ack: ack(file_id, AckStatus::Refused, 0, "too many files at once"),
                said: None,
            };
        }
        if let Err(e) = tokio::fs::create_dir_all(&self.dir).await {
            return Reply {
                ack: ack(file_id, AckStatus::Refused, 0, format!("cannot store it: {e}")),
                said: Some(format!("cannot create {}: {e}", self.dir.display())),
            };
        }
        let part = self.dir.join(format!("{name}.part"));
        // A resume continues the `.part` an interrupted push left.
        // Never through a link: the folder may be shared.
        let held = match std::fs::symlink_metadata(&part) {
            Ok(m) if m.is_file() && resume && size.is_none_or(|s| m.len() <= s) => m.len(),
            _ => {
                let _ = std::fs::remove_file(&part);
                let created = safe_fs::open(std::fs::OpenOptions::new().write(true).create_new(true), &part);
                if let Err(e) = created {
                    return Reply {
                        ack: ack(file_id, AckStatus::Refused, 0, format!("cannot store it: {e}")),
                        said: None,
                    };
                }
                0
            }
        };
        self.open.insert(
            file_id,
            Incoming {
                name: name.clone(),
                part,
                rx: Receiving::new(held, size, self.limit, self.window),
                resumed: held > 0,
            },
        );
        let said = if held > 0 {
            format!("< receiving {name}, resuming at {held} bytes")
        } else {
            format!("< receiving {name}")
        };
        Reply {
            ack: if resume {
                ack(file_id, AckStatus::Resume, held, "")
            } else {
                None
            },
            said: Some(said),
        }
    }

    async fn data(&mut self, file_id: u32, offset: u64, data: &[u8]) -> Reply {
        let Some(f) = self.open.get_mut(&file_id) else {
            return Reply {
                ack: ack(
                    file_id,
                    AckStatus::Refused,
                    5,
                    "unknown file_id: send FILE_BEGIN again",
                ),
                said: None,
            };
        };
        let answer = match f.rx.on_data(offset, data.len()) {
            OnData::Drop => None,
            OnData::AskRewind(from) => ack(file_id, AckStatus::Resume, from, "gap"),
            OnData::PastSize => ack(
                file_id,
                AckStatus::SizeMismatch,
                f.rx.held,
                "more data than announced",
            ),
            OnData::TooLarge => ack(file_id, AckStatus::Refused, 1, "too large"),
            OnData::Append { skip } => {
                let fresh = &data[skip..];
                if let Err(e) = append(&f.part, fresh).await {
                    return Reply {
                        ack: ack(file_id, AckStatus::Refused, 3, format!("cannot store it: {e}")),
                        said: None,
                    };
                }
                let progress = f.rx.appended(fresh.len() as u64);
                progress
                    .then(|| ack(file_id, AckStatus::Progress, f.rx.held, ""))
                    .flatten()
            }
        };
        Reply {
            ack: answer,
            said: None,
        }
    }

    async fn end(&mut self, file_id: u32, crc32: u32) -> Reply {
        let Some(f) = self.open.get_mut(&file_id) else {
            return Reply {
                ack: ack(
                    file_id,
                    AckStatus::Refused,
                    5,
                    "unknown file_id: send the file again",
                ),
                said: None,
            };
        };
        if let OnEnd::Repair(held) = f.rx.on_end() {
            return Reply {
                ack: ack(file_id, AckStatus::Resume, held, "missing data"),
                said: None,
            };
        }
        let Some(f) = self.open.remove(&file_id) else {
            return Reply {
                ack: None,
                said: None,
            };
        };
        let bytes = match safe_fs::read(&f.part) {
            Ok(b) => b,
            Err(e) => {
                return Reply {
                    ack: ack(
                        file_id,
                        AckStatus::Refused,
                        3,
                        format!("cannot read it back: {e}"),
                    ),
                    said: None,
                };
            }
        };
        if let Some(m) = judge(
            f.rx.size,
            bytes.len() as u64,
            crc32fast::hash(&bytes),
            crc32,
            f.resumed,
        ) {
            let _ = tokio::fs::remove_file(&f.part).await;
            return Reply {
                ack: ack(file_id, m.status, m.value, m.detail),
                said: Some(format!("< {} not kept: {}", f.name, m.reason)),
            };
        }
        let target = free_name(&self.dir, &f.name).await;
        if let Err(e) = tokio::fs::rename(&f.part, &target).await {
            return Reply {
                ack: ack(file_id, AckStatus::Refused, 3, format!("cannot store it: {e}")),
                said: None,
            };
        }
        let shown = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Reply {
            ack: ack(file_id, AckStatus::Saved, bytes.len() as u64, shown.clone()),
            said: Some(format!("< saved {} ({} bytes)", target.display(), bytes.len())),
        }
    }
}

async fn append(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = safe_fs::open(std::fs::OpenOptions::new().append(true), path)?;
    file.write_all(data)
}

/// `name`, or `name (2).ext`... : a saved file is never overwritten.
async fn free_name(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if tokio::fs::symlink_metadata(&first).await.is_err() {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_string(), format!(".{e}")),
        _ => (name.to_string(), String::new()),
    };
    for n in 2.. {
        let candidate = dir.join(format!("{stem} ({n}){ext}"));
        if tokio::fs::symlink_metadata(&candidate).await.is_err() {
            return candidate;
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.part` planted as a link to a file elsewhere is replaced, never
    /// written through.
    #[tokio::test]
    async fn a_part_that_is_a_link_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside.txt");
        std::fs::write(&outside, b"keep me").unwrap();
        let files = dir.path().join("files");
        std::fs::create_dir(&files).unwrap();
        std::os::unix::fs::symlink(&outside, files.join("x.bin.part")).unwrap();
        let mut r = Receiver::new(files.clone(), None);
        let begin = Message::FileBegin {
            file_id: 1,
            size: Some(3),
            name: "x.bin".into(),
            resume: true,
        };
        let reply = r.on_message(&begin).await.unwrap();
        assert!(
            matches!(
                reply.ack,
                Some(Message::FileAck {
                    status: AckStatus::Resume,
                    value: 0,
                    ..
                })
            ),
            "starts from 0, not from the link's target"
        );
        let data = Message::FileData {
            file_id: 1,
            offset: 0,
            data: bytes::Bytes::from_static(b"abc"),
        };
        r.on_message(&data).await.unwrap();
        let end = Message::FileEnd {
            file_id: 1,
            crc32: crc32fast::hash(b"abc"),
        };
        let reply = r.on_message(&end).await.unwrap();
        assert!(matches!(
            reply.ack,
            Some(Message::FileAck {
                status: AckStatus::Saved,
                ..
            })
        ));
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
        assert_eq!(std::fs::read(files.join("x.bin")).unwrap(), b"abc");
    }
}
