//! Writing a file so that a crash, a kill or a full disk leaves the old file or the new one, never
//! half of one: a hidden temp file in the same folder, written and fsynced, renamed over the
//! file, then the folder fsynced so that the rename itself survives a crash. Every file labctl
//! writes (units, env files, rendered manifests, saved plans, the proxy's state) goes through
//! here.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Who may read the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The owner only: the file is 0600 from its first byte, a folder made for it 0700 (secrets,
    /// the proxy's state, rendered manifests that may hold secret values).
    Private,
    /// Everyone may read it: 0644 (unit files, which never hold a secret).
    Public,
}

/// A file written in full beside its place, not yet in it: [`Staged::commit`] renames it into
/// place; dropping it removes it. Several files staged first and committed together fail
/// before any of them is in place when one cannot be written (a full disk).
#[derive(Debug)]
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

fn folder(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn dir_builder(access: Access) -> std::fs::DirBuilder {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    if access == Access::Private {
        b.mode(0o700);
    }
    b
}

/// Make `dir` and its parents when missing (0700 when private).
///
/// # Errors
/// [`Error::Write`] naming `dir`.
pub fn make_dir(dir: &Path, access: Access) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    dir_builder(access)
        .create(dir)
        .map_err(|source| Error::Write {
            path: dir.to_path_buf(),
            source,
        })
}

/// Write `bytes` beside `path` (making its folder when missing) and fsync them.
///
/// # Errors
/// [`Error::Write`] naming `path`.
pub fn stage(path: &Path, bytes: &[u8], access: Access) -> Result<Staged, Error> {
    let werr = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = folder(path);
    if !dir.is_dir() {
        dir_builder(access).create(dir).map_err(werr)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mode = match access {
        Access::Private => 0o600,
        Access::Public => 0o644,
    };
    // A leading dot: systemd, labctl's own observation and `kubectl apply -R` skip it.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(werr)?;
    tmp.write_all(bytes).map_err(werr)?;
    if mode != 0o600 {
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(werr)?;
    }
    tmp.as_file().sync_all().map_err(werr)?;
    Ok(Staged {
        tmp,
        path: path.to_path_buf(),
    })
}

impl Staged {
    /// Where it goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rename it into place and make the rename durable.
    ///
    /// # Errors
    /// [`Error::Write`] naming the file.
    pub fn commit(self) -> Result<(), Error> {
        let path = self.place()?;
        sync_dir(folder(&path))
    }

    /// Rename it into place; the rename is durable once its folder is synced ([`sync_dir`]),
    /// which a caller placing many files in one folder does once.
    ///
    /// # Errors
    /// [`Error::Write`] naming the file.
    pub fn place(self) -> Result<PathBuf, Error> {
        let Staged { tmp, path } = self;
        tmp.persist(&path).map_err(|e| Error::Write {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(path)
    }
}

/// Write `bytes` to `path` atomically and durably, only when nothing is there yet: a file (or
/// anything else) at `path` is never replaced, and the error's kind is then `AlreadyExists`.
/// For what must be written once and never lost to a second run (OpenBao's unseal keys).
///
/// # Errors
/// [`Error::Write`] naming `path`.
pub fn create_new(path: &Path, bytes: &[u8], access: Access) -> Result<(), Error> {
    let Staged { tmp, path } = stage(path, bytes, access)?;
    // A hard link fails when the name is taken: no window in which another file is replaced.
    tmp.persist_noclobber(&path).map_err(|e| Error::Write {
        path: path.clone(),
        source: e.error,
    })?;
    sync_dir(folder(&path))
}

/// Write `bytes` to `path` atomically and durably ([`stage`], then [`Staged::commit`]).
///
/// # Errors
/// [`Error::Write`] naming `path`.
pub fn write(path: &Path, bytes: &[u8], access: Access) -> Result<(), Error> {
    stage(path, bytes, access)?.commit()
}

/// Remove `path` durably; `false` when it was not there.
///
/// # Errors
/// [`Error::Write`] naming `path`.
pub fn remove(path: &Path) -> Result<bool, Error> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            sync_dir(folder(path))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(Error::Write {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Remove the temp files [`stage`] left beside `path` in a process that was killed before it
/// renamed or dropped them. Only for a caller that alone writes `path` now (an apply under the
/// stack's lock): another writer's staged file would go too.
///
/// # Errors
/// [`Error::Write`] naming a temp file that cannot go.
pub fn sweep(path: &Path) -> Result<(), Error> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(());
    };
    let dir = folder(path);
    // A folder that cannot be listed (missing, not a folder, unreadable) holds nothing to sweep
    // that could be reached; the write that follows fails naming its own file if it cannot work.
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let prefix = format!(".{name}.");
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        // `.NAME.` + tempfile's 6 random characters + `.tmp`.
        if n.len() == prefix.len() + 10 && n.starts_with(&prefix) && n.ends_with(".tmp") {
            match std::fs::remove_file(e.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(Error::Write {
                        path: dir.join(&n),
                        source,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Make the renames and removals in `dir` durable.
///
/// # Errors
/// [`Error::Write`] naming the folder.
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| Error::Write {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn a_file_is_replaced_whole_with_its_access_and_a_dropped_stage_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("made/secret.env");
        write(&path, b"A=1\n", Access::Private).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"A=1\n");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        let unit = dir.path().join("u.service");
        write(&unit, b"[Unit]\n", Access::Public).unwrap();
        assert_eq!(std::fs::metadata(&unit).unwrap().mode() & 0o777, 0o644);
        let staged = stage(&unit, b"[Service]\n", Access::Public).unwrap();
        assert_eq!(
            std::fs::read(&unit).unwrap(),
            b"[Unit]\n",
            "not in place yet"
        );
        drop(staged);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "no temp file left: {left:?}");
        assert!(remove(&unit).unwrap());
        assert!(!remove(&unit).unwrap());
    }

    #[test]
    fn create_new_never_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        create_new(&path, b"first", Access::Private).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let e = create_new(&path, b"second", Access::Private).unwrap_err();
        match e {
            Error::Write { source, .. } => {
                assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
