//! Streaming a received file to disk: `<folder>/<name>.part`, written in large
//! batches on tokio's blocking threads (never on the async workers), CRC-32 computed
//! on the way, fsynced and moved to a final name that never overwrites anything.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::names::{RESERVED_NAMES, numbered};
use super::safe_fs;

/// Bytes gathered before one write to disk; with one batch in flight and one
/// filling, a transfer holds at most about twice this in memory.
pub const FLUSH_AT: usize = 1 << 20;
/// Chunks smaller than this are copied into one buffer rather than kept as they came.
const COPY_BELOW: usize = 64 * 1024;

struct Writer {
    file: File,
    hasher: crc32fast::Hasher,
}

/// How many received files are open right now, across all connections: each
/// holds a file descriptor (see [`super::Shared::room_for_a_file`]).
#[derive(Debug, Clone, Default)]
pub struct OpenFiles(Arc<AtomicUsize>);

impl OpenFiles {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One open file counted in [`OpenFiles`] until dropped.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
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
    counted: Option<Counted>,
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
            safe_fs::real_dir(&folder)?;
            take_free_name(&folder, &name, ".part", false, |path| {
                safe_fs::open(OpenOptions::new().write(true).create_new(true), path)
            })
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
            counted: None,
        })
    }

    /// Reopens an interrupted `.part` to append to it, with the CRC-32 of what it
    /// already holds, so a resumed file is checked end to end like any other.
    pub async fn resume(part_path: PathBuf) -> io::Result<Self> {
        let path = part_path.clone();
        let (file, hasher, held) = blocking(move || {
            let mut file = safe_fs::open(OpenOptions::new().read(true).append(true), &path)?;
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
            counted: None,
        })
    }

    /// Counts this file in `open` for as long as it lives.
    pub fn counted_in(mut self, open: &OpenFiles) -> Self {
        open.0.fetch_add(1, Ordering::Relaxed);
        self.counted = Some(Counted(open.0.clone()));
        self
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

    /// Whether writing `more` bytes now would wait for the batch still being
    /// written (the disk is behind): the caller gives back what others need first.
    pub fn would_wait(&self, more: usize) -> bool {
        self.batch_len + more >= FLUSH_AT && self.in_flight.as_ref().is_some_and(|t| !t.is_finished())
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

/// The `.part` files in `folder` (real files, not links), oldest first.
pub fn list_parts(folder: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut parts: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .filter_map(|e| {
            let meta = fs::symlink_metadata(e.path()).ok()?;
            let modified = meta.modified().ok()?;
            meta.is_file().then(|| (modified, e.path()))
        })
        .collect();
    parts.sort();
    parts.into_iter().map(|(_, p)| p).collect()
}

/// Sidecar of a native-frame `.part` (`.<part name>.meta`): what a resume must match.
pub fn meta_path(part: &Path) -> PathBuf {
    let file = part
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    part.with_file_name(format!(".{file}.meta"))
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
        // The console's own files in a device folder are never a received file's name.
        let reserved = RESERVED_NAMES.contains(&name.as_str());
        let (candidate, ()) = take_free_name(&folder, &name, "", reserved, |candidate| {
            match fs::hard_link(&part, candidate) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
                // File systems without hard links (FAT on a USB stick): check, then
                // rename; a dangling link counts as taken, so it is never replaced.
                Err(_) if safe_fs::is_free(candidate) => fs::rename(&part, candidate),
                Err(_) => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
            }
        })?;
        // After a hard link the `.part` is still there; after a rename it is not.
        if !safe_fs::is_free(&part) {
            fs::remove_file(&part)?;
        }
        sync_folder(&folder);
        Ok(candidate)
    })
    .await
}

/// Creates `<folder>/<name><suffix>`, or `<name> (n)<suffix>` with the first free
/// n, through `take`, which must fail with `AlreadyExists` when the name is taken
/// (create_new, hard_link: atomic, so nothing is ever overwritten). The numbers
/// in use are found by galloping and bisecting, so the ten-thousandth `img.bmp`
/// costs a few dozen probes, not ten thousand.
fn take_free_name<T>(
    folder: &Path,
    name: &str,
    suffix: &str,
    skip_plain: bool,
    mut take: impl FnMut(&Path) -> io::Result<T>,
) -> io::Result<(PathBuf, T)> {
    let path_of = |n: u32| folder.join(format!("{}{suffix}", numbered(name, n)));
    let mut n = u32::from(skip_plain);
    for _ in 0..64 {
        let path = path_of(n);
        match take(&path) {
            Ok(made) => return Ok((path, made)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                n = first_free_after(n, |k| !safe_fs::is_free(&path_of(k)));
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "cannot find a free name for {name}{suffix} in {}",
        folder.display()
    )))
}

/// A number above `taken` that `is_taken` says is free, found in O(log n) probes
/// on the usual case where the numbers in use are 1..=k (gaps only make the
/// answer larger, never wrong: the caller's atomic create has the last word).
fn first_free_after(taken: u32, is_taken: impl Fn(u32) -> bool) -> u32 {
    let mut lo = taken.max(1);
    if !is_taken(lo) {
        return lo;
    }
    let mut step = 1u32;
    let mut hi = lo.saturating_add(step);
    while is_taken(hi) {
        if hi == u32::MAX {
            return hi;
        }
        lo = hi;
        step = step.saturating_mul(2);
        hi = hi.saturating_add(step);
    }
    // lo taken, hi free: bisect to the first free one.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if is_taken(mid) { lo = mid } else { hi = mid }
    }
    hi
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

    #[test]
    fn the_first_free_number_takes_few_probes() {
        for taken_upto in [0u32, 1, 2, 3, 7, 100, 9_999, 1_000_000] {
            let probes = std::cell::Cell::new(0);
            let found = first_free_after(0, |k| {
                probes.set(probes.get() + 1);
                k <= taken_upto
            });
            assert_eq!(found, taken_upto + 1);
            assert!(probes.get() <= 64, "{taken_upto}: {} probes", probes.get());
        }
        // A gap below the highest number is skipped, never reused wrongly.
        assert!(first_free_after(0, |k| k <= 5 || (9..=12).contains(&k)) > 5);
    }

    #[test]
    fn thousands_of_one_name_stay_fast_and_distinct() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            for i in 0..1200u32 {
                let part = PartFile::create(dir.path().into(), "img.bmp".into())
                    .await
                    .expect("create");
                let done = part.finish().await.expect("finish");
                let path = place(done.part_path, dir.path().into(), "img.bmp".into())
                    .await
                    .expect("place");
                let want = if i == 0 {
                    "img.bmp".to_string()
                } else {
                    format!("img ({i}).bmp")
                };
                assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(want.as_str()));
            }
        });
    }

    #[test]
    fn a_planted_link_is_never_written_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let victim = elsewhere.path().join("victim");
        std::fs::write(&victim, b"keep").expect("write");
        std::os::unix::fs::symlink(&victim, dir.path().join("x.part")).expect("link");
        std::os::unix::fs::symlink(&victim, dir.path().join("x")).expect("link");
        rt().block_on(async {
            // Resuming through the link is refused outright.
            let err = PartFile::resume(dir.path().join("x.part"))
                .await
                .err()
                .expect("refused");
            assert!(safe_fs::is_link(&err), "{err}");
            // A new part and its final name step around the links.
            let mut part = PartFile::create(dir.path().into(), "x".into())
                .await
                .expect("create");
            assert_eq!(part.part_path(), dir.path().join("x (1).part"));
            part.write(Bytes::from_static(b"data")).await.expect("write");
            let done = part.finish().await.expect("finish");
            let path = place(done.part_path, dir.path().into(), "x".into())
                .await
                .expect("place");
            assert_eq!(path, dir.path().join("x (1)"));
        });
        assert_eq!(std::fs::read(&victim).expect("read"), b"keep");
        // A device folder that is a link is refused.
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("cam2")).expect("link");
        let err = rt()
            .block_on(PartFile::create(dir.path().join("cam2"), "y".into()))
            .err()
            .expect("refused");
        assert!(safe_fs::is_link(&err), "{err}");
        assert!(!elsewhere.path().join("y.part").exists());
    }
}
