//! Streaming a received file to disk: `<folder>/<name>.part`, written in large
//! batches on tokio's blocking threads (never on the async workers), CRC-32 computed
//! on the way, fsynced and moved to a final name that never overwrites anything.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::names::{RESERVED_NAMES, numbered};

/// Bytes gathered before one write to disk; with one batch in flight and one
/// filling, a transfer holds at most about twice this in memory.
pub const FLUSH_AT: usize = 1 << 20;
/// Chunks smaller than this are copied into one buffer rather than kept as they came.
const COPY_BELOW: usize = 64 * 1024;

struct Writer {
    file: File,
    hasher: crc32fast::Hasher,
}

/// A file being received.
pub struct PartFile {
    part_path: PathBuf,
    idle: Option<Writer>,
    in_flight: Option<JoinHandle<io::Result<Writer>>>,
    batch: Vec<Bytes>,
    batch_len: usize,
    /// Small chunks gathered by copy (see [`PartFile::write`]).
    small: bytes::BytesMut,
    accepted: u64,
}

/// A complete, fsynced `.part` file.
#[derive(Debug)]
pub struct Finished {
    pub part_path: PathBuf,
    pub size: u64,
    pub crc32: u32,
}

impl PartFile {
    /// Creates `<folder>/<name>.part` (or `<name> (n).part` if taken), making the
    /// folder if needed. Never opens an existing file.
    pub async fn create(folder: PathBuf, name: String) -> io::Result<Self> {
        let (part_path, file) = blocking(move || {
            fs::create_dir_all(&folder)?;
            for n in 0..10_000 {
                let path = folder.join(format!("{}.part", numbered(&name, n)));
                match OpenOptions::new().write(true).create_new(true).open(&path) {
                    Ok(file) => return Ok((path, file)),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(io::Error::other(format!("too many files named like {name}.part")))
        })
        .await?;
        Ok(Self {
            part_path,
            idle: Some(Writer {
                file,
                hasher: crc32fast::Hasher::new(),
            }),
            in_flight: None,
            batch: Vec::new(),
            batch_len: 0,
            small: bytes::BytesMut::new(),
            accepted: 0,
        })
    }

    /// Reopens an interrupted `.part` to append to it, with the CRC-32 of what it
    /// already holds, so a resumed file is checked end to end like any other.
    pub async fn resume(part_path: PathBuf) -> io::Result<Self> {
        let path = part_path.clone();
        let (file, hasher, held) = blocking(move || {
            let mut file = OpenOptions::new().read(true).append(true).open(&path)?;
            let mut hasher = crc32fast::Hasher::new();
            let mut buf = vec![0u8; FLUSH_AT];
            let mut held = 0u64;
            loop {
                let n = io::Read::read(&mut file, &mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                held += n as u64;
            }
            Ok((file, hasher, held))
        })
        .await?;
        Ok(Self {
            part_path,
            idle: Some(Writer { file, hasher }),
            in_flight: None,
            batch: Vec::new(),
            batch_len: 0,
            small: bytes::BytesMut::new(),
            accepted: held,
        })
    }

    pub fn part_path(&self) -> &Path {
        &self.part_path
    }

    /// Bytes accepted so far (some may still be on their way to disk).
    pub fn len(&self) -> u64 {
        self.accepted
    }

    pub fn is_empty(&self) -> bool {
        self.accepted == 0
    }

    /// Takes a chunk without copying it; writes to disk once a batch is full.
    pub async fn write(&mut self, data: Bytes) -> io::Result<()> {
        self.accepted += data.len() as u64;
        self.batch_len += data.len();
        if data.len() < COPY_BELOW {
            // A small chunk may pin a whole read buffer (256 KiB for a few bytes, from
            // a device that trickles): copy it, so memory follows the data held.
            self.small.extend_from_slice(&data);
            if self.small.len() >= COPY_BELOW {
                self.batch.push(self.small.split().freeze());
            }
        } else {
            if !self.small.is_empty() {
                self.batch.push(self.small.split().freeze());
            }
            self.batch.push(data);
        }
        if self.batch_len >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Hands the current batch to a blocking thread, after the previous one is done.
    async fn flush(&mut self) -> io::Result<()> {
        if !self.small.is_empty() {
            self.batch.push(self.small.split().freeze());
        }
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut writer = self.settle().await?;
        let batch = std::mem::take(&mut self.batch);
        self.batch_len = 0;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            for chunk in &batch {
                writer.file.write_all(chunk)?;
                writer.hasher.update(chunk);
            }
            Ok(writer)
        }));
        Ok(())
    }

    /// Waits for the batch in flight, if any, and takes the writer back.
    async fn settle(&mut self) -> io::Result<Writer> {
        if let Some(task) = self.in_flight.take() {
            let writer = task.await.map_err(io::Error::other)??;
            return Ok(writer);
        }
        self.idle
            .take()
            .ok_or_else(|| io::Error::other("an earlier write to this file failed"))
    }

    /// Writes everything, fsyncs, and reports size and CRC-32. The `.part` stays
    /// where it is; [`place`] gives it its final name.
    pub async fn finish(mut self) -> io::Result<Finished> {
        self.flush().await?;
        let writer = self.settle().await?;
        let part_path = self.part_path.clone();
        let size = self.accepted;
        blocking(move || {
            writer.file.sync_all()?;
            Ok(Finished {
                part_path,
                size,
                crc32: writer.hasher.finalize(),
            })
        })
        .await
    }

    /// Writes what arrived and leaves it as `.part` (an incomplete or refused file:
    /// never lost). Returns the `.part` path.
    pub async fn keep(mut self) -> io::Result<PathBuf> {
        self.flush().await?;
        let writer = self.settle().await?;
        let path = self.part_path.clone();
        blocking(move || writer.file.sync_data()).await?;
        Ok(path)
    }
}

/// Deletes a `.part` that must not be kept (its content failed its check).
pub async fn discard(part: PathBuf) -> io::Result<()> {
    blocking(move || fs::remove_file(part)).await
}

/// Moves a finished `.part` to `<folder>/<name>`, or `<name> (1)`, `(2)`... if taken.
/// A hard link makes "taken" an atomic check, so a file is never overwritten even
/// when two transfers finish with the same name at the same moment.
pub async fn place(part: PathBuf, folder: PathBuf, name: String) -> io::Result<PathBuf> {
    blocking(move || {
        for n in 0..10_000 {
            // The console's own files in a device folder are never a received file's name.
            if n == 0 && RESERVED_NAMES.contains(&name.as_str()) {
                continue;
            }
            let candidate = folder.join(numbered(&name, n));
            match fs::hard_link(&part, &candidate) {
                Ok(()) => {
                    fs::remove_file(&part)?;
                    sync_folder(&folder);
                    return Ok(candidate);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                // File systems without hard links (FAT on a USB stick): check, then rename.
                Err(_) if !candidate.exists() => {
                    fs::rename(&part, &candidate)?;
                    sync_folder(&folder);
                    return Ok(candidate);
                }
                Err(_) => continue,
            }
        }
        Err(io::Error::other(format!("too many files named like {name}")))
    })
    .await
}

fn sync_folder(folder: &Path) {
    // Makes the rename durable; not all platforms allow opening a folder, so best effort.
    if let Ok(dir) = File::open(folder) {
        let _ = dir.sync_all();
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn streams_in_batches_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("cam");
        rt().block_on(async {
            let data: Vec<u8> = (0..3 * FLUSH_AT + 123).map(|i| (i % 253) as u8).collect();
            let mut names = Vec::new();
            for _ in 0..3 {
                let mut part = PartFile::create(folder.clone(), "img.bmp".into())
                    .await
                    .expect("create");
                for chunk in data.chunks(70_000) {
                    part.write(Bytes::copy_from_slice(chunk)).await.expect("write");
                }
                let done = part.finish().await.expect("finish");
                assert_eq!(done.size, data.len() as u64);
                assert_eq!(done.crc32, crc32fast::hash(&data));
                let path = place(done.part_path, folder.clone(), "img.bmp".into())
                    .await
                    .expect("place");
                assert_eq!(std::fs::read(&path).expect("read"), data);
                names.push(
                    path.file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default()
                        .to_string(),
                );
            }
            assert_eq!(names, ["img.bmp", "img (1).bmp", "img (2).bmp"]);
            let leftovers: Vec<_> = std::fs::read_dir(&folder)
                .expect("list")
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
                .collect();
            assert!(leftovers.is_empty());
        });
    }

    #[test]
    fn concurrent_parts_with_one_name_get_their_own_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let a = PartFile::create(dir.path().into(), "x".into()).await.expect("a");
            let b = PartFile::create(dir.path().into(), "x".into()).await.expect("b");
            assert_ne!(a.part_path(), b.part_path());
            let kept = a.keep().await.expect("keep");
            assert!(kept.exists());
        });
    }
}
