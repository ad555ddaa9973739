//! The manager's files: labctl's unit folder and the files its units name, read and written on
//! this machine directly, on another over the host's ssh connection (a round trip per call, not
//! per file). Writes leave the old file or the new one, never half of one: staged beside their
//! place first ([`Systemd::stage`]), then renamed into it ([`Systemd::write`]).

use super::*;
use crate::atomic::{self, Access};
use crate::backend::ssh::{Put, Step};

/// labctl's unit folder as read: its regular files by name (no `*.wants/` folders, no symlinks,
/// no dot files), and the drop-ins below it (`DIR/UNIT.d/*.conf`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitDir {
    /// File name → text.
    pub files: BTreeMap<String, String>,
    /// Paths of the drop-ins, as systemd names them in `DropInPaths`.
    pub drop_ins: Vec<String>,
    /// Units an apply marked as owed a restart (or reload) and was stopped before it was done
    /// ([`Target::restart_marker`]).
    pub restart_owed: BTreeSet<String>,
}

/// Files written in full beside their places, not in them yet: [`Systemd::write`] renames them
/// into place; dropped unwritten, they are removed.
#[derive(Debug, Default)]
pub struct Staged {
    local: Vec<atomic::Staged>,
    /// On another machine: the host, and each temp file with its place.
    remote: Option<(Remote, Vec<(PathBuf, PathBuf)>)>,
}

impl Staged {
    /// Where the files go, in order.
    pub fn paths(&self) -> Vec<PathBuf> {
        match &self.remote {
            Some((_, files)) => files.iter().map(|(_, p)| p.clone()).collect(),
            None => self.local.iter().map(|s| s.path().to_path_buf()).collect(),
        }
    }

    /// Whether nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.local.is_empty() && self.remote.as_ref().is_none_or(|(_, f)| f.is_empty())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // Local temp files remove themselves; remote ones are removed by a last command.
        if let Some((remote, files)) = self.remote.take()
            && !files.is_empty()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let tmps: Vec<PathBuf> = files.into_iter().map(|(t, _)| t).collect();
            rt.spawn(async move { remote.discard(&tmps).await });
        }
    }
}

/// What [`Systemd::write`] changes, in this order.
#[derive(Debug, Default)]
pub struct Writes {
    /// Env files to remove.
    pub remove_env: Vec<PathBuf>,
    /// Env files to put in place (each folder synced after).
    pub env: Staged,
    /// Unit files to put in place.
    pub units: Staged,
    /// Unit files to remove (gone already is fine).
    pub remove: Vec<PathBuf>,
}

fn parent(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

impl Systemd {
    /// labctl's unit folder: its files and the drop-ins below it. A folder that does not exist
    /// holds none.
    ///
    /// # Errors
    /// [`Error::Read`] when the folder or a file in it cannot be read; on another machine,
    /// [`Error::Backend`] with the reason.
    pub async fn read_unit_dir(&self) -> Result<UnitDir, Error> {
        let start = Instant::now();
        let dir = &self.target.unit_dir;
        let read = match &self.target.remote {
            Some(remote) => remote.read_dir(dir).await.map(|l| UnitDir {
                files: l.files,
                drop_ins: l.drop_ins,
                restart_owed: l.restart_owed,
            }),
            None => observe::read_unit_dir(dir).map(|(files, restart_owed)| UnitDir {
                files,
                drop_ins: observe::drop_ins_below(dir),
                restart_owed,
            }),
        };
        self.spent(start);
        read
    }

    /// The text of each of `paths` on the manager's machine; `None` for one that does not exist.
    ///
    /// # Errors
    /// [`Error::Read`] when a file cannot be read; on another machine, [`Error::Backend`] with
    /// the reason.
    pub async fn read_files(&self, paths: &[PathBuf]) -> Result<Vec<Option<String>>, Error> {
        match &self.target.remote {
            Some(remote) => remote.read_files(paths).await,
            None => paths
                .iter()
                .map(|p| match std::fs::read_to_string(p) {
                    Ok(t) => Ok(Some(t)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(Error::Read {
                        path: p.clone(),
                        source,
                    }),
                })
                .collect(),
        }
    }

    /// Write each file beside its place, with `access` (owner-only from the first byte for
    /// [`Access::Private`], its folder made 0700 when missing), synced: nothing is in place yet.
    ///
    /// # Errors
    /// [`Error::Write`] naming the file that cannot be written (no temp file is left); on
    /// another machine, [`Error::Backend`] with what its shell said.
    pub async fn stage(
        &self,
        files: &[(PathBuf, String)],
        access: Access,
    ) -> Result<Staged, Error> {
        match &self.target.remote {
            None => Ok(Staged {
                local: files
                    .iter()
                    .map(|(path, text)| {
                        // What a killed apply staged and never placed goes first (the stack's
                        // lock is held).
                        atomic::sweep(path)?;
                        atomic::stage(path, text.as_bytes(), access)
                    })
                    .collect::<Result<_, _>>()?,
                remote: None,
            }),
            Some(remote) => {
                let puts: Vec<Put> = files
                    .iter()
                    .map(|(path, text)| Put {
                        path: path.clone(),
                        bytes: text.as_bytes().to_vec(),
                        private: access == Access::Private,
                    })
                    .collect();
                let tmps = remote.stage(&puts).await?;
                Ok(Staged {
                    local: Vec::new(),
                    remote: Some((
                        remote.clone(),
                        tmps.into_iter()
                            .zip(files.iter().map(|(p, _)| p.clone()))
                            .collect(),
                    )),
                })
            }
        }
    }

    /// Change the files as `writes` says, in its order, each folder synced so that the renames
    /// and removals survive a crash: on another machine in one command.
    ///
    /// # Errors
    /// [`Error::Write`] naming the file; on another machine, [`Error::Backend`] with what its
    /// shell said. What came before the failing step is done.
    pub async fn write(&self, writes: Writes) -> Result<(), Error> {
        let Writes {
            remove_env,
            mut env,
            mut units,
            remove,
        } = writes;
        let unit_dir = self.target.unit_dir.clone();
        let touches_units = !units.is_empty() || !remove.is_empty();
        let start = Instant::now();
        let result = match &self.target.remote {
            None => (|| {
                // A failpoint after each change: the fault tests kill an apply between any two.
                for p in &remove_env {
                    atomic::remove(p)?;
                    crate::failpoint::hit("apply.systemd.write");
                }
                for f in std::mem::take(&mut env.local) {
                    f.commit()?;
                    crate::failpoint::hit("apply.systemd.write");
                }
                for f in std::mem::take(&mut units.local) {
                    f.place()?;
                    crate::failpoint::hit("apply.systemd.write");
                }
                for path in &remove {
                    match std::fs::remove_file(path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(Error::Write {
                                path: path.clone(),
                                source,
                            });
                        }
                    }
                    crate::failpoint::hit("apply.systemd.write");
                }
                if touches_units {
                    atomic::sync_dir(&unit_dir)?;
                }
                Ok(())
            })(),
            Some(remote) => {
                let mut steps = Vec::new();
                for p in &remove_env {
                    steps.extend([Step::Remove(p.clone()), Step::Sync(parent(p))]);
                }
                for (tmp, path) in env.remote.take().map(|(_, f)| f).unwrap_or_default() {
                    let dir = parent(&path);
                    steps.extend([Step::Place(tmp, path), Step::Sync(dir)]);
                }
                for (tmp, path) in units.remote.take().map(|(_, f)| f).unwrap_or_default() {
                    steps.push(Step::Place(tmp, path));
                }
                steps.extend(remove.iter().cloned().map(Step::Remove));
                if touches_units {
                    steps.push(Step::Sync(unit_dir));
                }
                let result = remote.commit(&steps).await;
                crate::failpoint::hit("apply.systemd.write");
                if result.is_err() {
                    let tmps: Vec<PathBuf> = steps
                        .iter()
                        .filter_map(|s| match s {
                            Step::Place(tmp, _) => Some(tmp.clone()),
                            _ => None,
                        })
                        .collect();
                    remote.discard(&tmps).await;
                }
                result
            }
        };
        self.spent(start);
        result
    }
}
