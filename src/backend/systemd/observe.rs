//! Reading what the manager has: the unit files in labctl's folder, and each unit's state and
//! where it was loaded from.

use super::*;

impl Systemd {
    /// The regular files in the unit folder on this machine by name, with their text (no
    /// `*.wants/` folders, no `systemctl link` symlinks, no dot files). For any machine, see
    /// [`Systemd::read_unit_dir`].
    ///
    /// # Errors
    /// [`Error::Read`] when the folder or a file in it cannot be read.
    pub fn unit_files(&self) -> Result<BTreeMap<String, String>, Error> {
        read_unit_dir(&self.target.unit_dir).map(|(files, _)| files)
    }

    /// What systemd reports about each unit in `names`: its properties, its file's enablement
    /// read from disk now (with `dir`, the unit folder as just read), and, when systemd loaded
    /// it from a file outside labctl's unit folder, that file's text. One `GetAll` per unit and
    /// one `ListUnitFilesByPatterns` for all, every call in flight at once: one round trip
    /// (and one more to read files loaded from elsewhere, when there are any).
    ///
    /// # Errors
    /// [`Error::Read`] when a loaded file cannot be read; [`Error::Backend`] when systemd does
    /// not answer.
    pub async fn observe(
        &self,
        names: &[String],
        dir: &UnitDir,
    ) -> Result<Vec<ObservedUnit>, Error> {
        let start = Instant::now();
        let patterns: Vec<&str> = names.iter().map(String::as_str).collect();
        let (states, files_now) = futures_util::join!(
            join_all(names.iter().map(|n| self.unit_state(n, dir))),
            self.manager.list_unit_files_by_patterns(&[], &patterns)
        );
        self.count(names.len() as u64 + 1);
        let file_states: HashMap<String, String> = files_now
            .map_err(|e| backend("list unit files", e))?
            .into_iter()
            .filter_map(|(path, state)| {
                let name = Path::new(&path).file_name()?.to_string_lossy().into_owned();
                Some((name, state))
            })
            .collect();
        let mut out = Vec::new();
        let mut elsewhere = Vec::new();
        for (i, (name, state)) in names.iter().zip(states).enumerate() {
            let mut state = state?;
            if let Some(s) = file_states.get(name) {
                state.unit_file_state = s.clone();
            }
            let fragment = Path::new(&state.fragment_path);
            if !state.fragment_path.is_empty() && fragment != self.target.unit_path(name) {
                elsewhere.push((i, fragment.to_path_buf()));
            }
            out.push(ObservedUnit {
                name: name.clone(),
                state,
                loaded_elsewhere: None,
            });
        }
        self.spent(start);
        let paths: Vec<PathBuf> = elsewhere.iter().map(|(_, p)| p.clone()).collect();
        let texts = self.read_files(&paths).await?;
        for ((i, _), text) in elsewhere.into_iter().zip(texts) {
            out[i].loaded_elsewhere = text;
        }
        Ok(out)
    }

    async fn unit_state(&self, unit: &str, dir: &UnitDir) -> Result<UnitState, Error> {
        let step = || format!("read the state of `{unit}`");
        let props = fdo::PropertiesProxy::builder(&self.conn)
            .destination(SERVICE)
            .path(unit_object_path(unit))
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| backend(&step(), e))?;
        let all = props
            .get_all(UNIT_IFACE)
            .await
            .map_err(|e| backend(&step(), e))?;
        let text = |k: &str| {
            all.get(k)
                .and_then(|v| v.try_clone().ok())
                .and_then(|v| String::try_from(v).ok())
                .unwrap_or_default()
        };
        let flag = |k: &str| {
            all.get(k)
                .and_then(|v| bool::try_from(v.try_clone().ok()?).ok())
                .unwrap_or(false)
        };
        let list = |k: &str| -> Vec<String> {
            all.get(k)
                .and_then(|v: &OwnedVariant| v.try_clone().ok())
                .and_then(|v| Vec::<String>::try_from(v).ok())
                .unwrap_or_default()
        };
        let drop_in_paths = list("DropInPaths");
        // systemd caches folder listings until a daemon-reload, so `NeedDaemonReload` misses a new
        // drop-in in labctl's own folder; compare with the disk.
        let own = format!(
            "{}/",
            self.target.unit_dir.join(format!("{unit}.d")).display()
        );
        let unread = dir
            .drop_ins
            .iter()
            .filter(|p| p.starts_with(&own))
            .any(|p| !drop_in_paths.contains(p));
        Ok(UnitState {
            load_state: text("LoadState"),
            active_state: text("ActiveState"),
            sub_state: text("SubState"),
            // Replaced by the fresh state from the file listing, when the unit has a file.
            unit_file_state: text("UnitFileState"),
            need_daemon_reload: flag("NeedDaemonReload") || unread,
            fragment_path: text("FragmentPath"),
            drop_in_paths,
            restart_owed: dir.restart_owed.contains(unit),
        })
    }

    /// `ActiveState` and `SubState` of each unit, read through the typed unit proxy.
    ///
    /// # Errors
    /// [`Error::Backend`] when systemd does not answer.
    pub async fn active_states(&self, units: &[String]) -> Result<Vec<(String, String)>, Error> {
        let start = Instant::now();
        let states = join_all(units.iter().map(|u| async move {
            let step = || format!("read the state of `{u}`");
            let p = UnitProxy::builder(&self.conn)
                .path(unit_object_path(u))
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(|e| backend(&step(), e))?;
            let (a, s) = futures_util::join!(p.active_state(), p.sub_state());
            Ok::<_, Error>((
                a.map_err(|e| backend(&step(), e))?,
                s.map_err(|e| backend(&step(), e))?,
            ))
        }))
        .await;
        self.count(2 * units.len() as u64);
        self.spent(start);
        states.into_iter().collect()
    }

    /// `Type` and `NRestarts` of each unit that is a service (`None` for the others), read
    /// through the typed service proxy.
    ///
    /// # Errors
    /// [`Error::Backend`] when systemd does not answer.
    pub async fn service_types_and_restarts(
        &self,
        units: &[String],
    ) -> Result<Vec<Option<(String, u32)>>, Error> {
        let start = Instant::now();
        let services = units.iter().filter(|u| u.ends_with(".service")).count();
        let out = join_all(units.iter().map(|u| async move {
            if !u.ends_with(".service") {
                return Ok(None);
            }
            let step = || format!("read the service state of `{u}`");
            let p = ServiceProxy::builder(&self.conn)
                .path(unit_object_path(u))
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(|e| backend(&step(), e))?;
            let (t, n) = futures_util::join!(p.service_type(), p.n_restarts());
            Ok::<_, Error>(Some((
                t.map_err(|e| backend(&step(), e))?,
                n.map_err(|e| backend(&step(), e))?,
            )))
        }))
        .await;
        self.count(2 * services as u64);
        self.spent(start);
        out.into_iter().collect()
    }
}

/// Every drop-in below `dir` (`DIR/UNIT.d/*.conf`), as systemd names them in `DropInPaths`.
pub(super) fn drop_ins_below(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".d")
                .map(|unit| drop_ins_on_disk(dir, unit))
        })
        .flatten()
        .collect();
    out.sort();
    out
}

/// `DIR/UNIT.d/*.conf`, as systemd names drop-ins in `DropInPaths`.
fn drop_ins_on_disk(dir: &Path, unit: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join(format!("{unit}.d"))) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// Unit files in `dir` by name, and the units its restart markers name. A folder that does
/// not exist (or is not a folder) holds none.
pub(super) fn read_unit_dir(
    dir: &Path,
) -> Result<(BTreeMap<String, String>, BTreeSet<String>), Error> {
    let mut out = BTreeMap::new();
    let mut owed = BTreeSet::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok((out, owed));
        }
        Err(source) => {
            return Err(Error::Read {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for e in entries {
        let e = e.map_err(|source| Error::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        // Only regular files: `*.wants/` folders and `systemctl link` symlinks are not labctl's.
        let Ok(ft) = e.file_type() else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        if !ft.is_file() {
            continue;
        }
        if let Some(unit) = marked_unit(&name) {
            owed.insert(unit.to_string());
        }
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read { path, source })?;
        out.insert(name, text);
    }
    Ok((out, owed))
}
