//! Opening what the console writes inside the received folder without following
//! symbolic links. On a shared lab PC others may write to that folder: a link
//! planted where a device folder, a `.part`, a sidecar or a log of ours should be
//! must never make the console write (or append, or read for a resume) elsewhere.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A symbolic link (or another non-regular entry) found where a file or folder
/// of the console's should be.
#[derive(Debug)]
pub struct LinkFound(pub PathBuf);

impl fmt::Display for LinkFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is a symbolic link, and benchlink never writes through links; remove it",
            self.0.display()
        )
    }
}

impl std::error::Error for LinkFound {}

fn link_found(path: &Path) -> io::Error {
    io::Error::other(LinkFound(path.to_path_buf()))
}

/// Whether an error came from a link found in the received folder.
pub fn is_link(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<LinkFound>())
}

/// Opens `path` with `options`, refusing a symbolic link as its last component.
pub fn open(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    match options.custom_flags(libc::O_NOFOLLOW).open(path) {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(link_found(path)),
        other => other,
    }
}

/// Reads a whole file that must not be a link.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = open(OpenOptions::new().read(true), path)?;
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(bytes)
}

/// Writes a whole file (created or truncated) that must not be a link.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = open(OpenOptions::new().write(true).create(true).truncate(true), path)?;
    io::Write::write_all(&mut file, bytes)
}

/// Makes sure `folder` is a real directory (created if missing), not a link to
/// one: a device folder sits directly in the received folder, which the user
/// chose (and which may itself be a link: it is resolved once at start).
pub fn real_dir(folder: &Path) -> io::Result<()> {
    for _ in 0..2 {
        match fs::symlink_metadata(folder) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(link_found(folder)),
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} is not a folder; move it away so benchlink can use that name",
                    folder.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(folder) {
                // Made by another session at the same moment: check what it is.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                other => return other,
            },
            Err(e) => return Err(e),
        }
    }
    Err(link_found(folder))
}

/// Whether `path` names nothing at all, not even a dangling link.
pub fn is_free(path: &Path) -> bool {
    matches!(fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// Bytes an unprivileged writer can still put on the file system of `path`.
pub fn free_space(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs only writes into the zeroed struct we pass, and reads a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    (rc == 0).then(|| (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_refused_where_our_files_and_folders_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let target = elsewhere.path().join("target");
        fs::write(&target, b"precious").expect("write");

        let link = dir.path().join("conversation.log");
        symlink(&target, &link).expect("symlink");
        let err = open(OpenOptions::new().append(true).create(true), &link).expect_err("a link");
        assert!(is_link(&err), "{err}");
        assert!(write(&link, b"x").is_err());
        assert!(read(&link).is_err());
        assert_eq!(fs::read(&target).expect("read"), b"precious");

        let folder_link = dir.path().join("cam2");
        symlink(elsewhere.path(), &folder_link).expect("symlink");
        assert!(is_link(&real_dir(&folder_link).expect_err("a link")));

        let real = dir.path().join("cam1");
        real_dir(&real).expect("created");
        real_dir(&real).expect("exists");
        assert!(fs::symlink_metadata(&real).expect("meta").is_dir());

        assert!(!is_free(&link));
        assert!(is_free(&dir.path().join("nothing")));
        symlink(dir.path().join("dangling"), dir.path().join("d")).expect("symlink");
        assert!(!is_free(&dir.path().join("d")));
    }
}
