//! Files on another host: its unit folder and the files its units name, read in one command,
//! staged beside their places and renamed into them in another.

use super::*;

/// How one remote file should be staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    /// Where it goes.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Owner-only (an env file of secrets) rather than readable by all (a unit file).
    pub private: bool,
}

/// One step of [`Remote::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Remove a file; one that is gone already is fine.
    Remove(PathBuf),
    /// Rename a staged file (its temp path) into place.
    Place(PathBuf, PathBuf),
    /// Sync a folder, so that the renames and removals in it survive a crash.
    Sync(PathBuf),
}

impl Remote {
    pub(super) fn keep_listing(&self, dir: &Path, listing: UnitListing) {
        *self
            .shared
            .listing
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((dir.to_path_buf(), listing));
    }

    /// The regular files of `dir` on the host by name, with their text (no symlinks, no dot
    /// files), and the drop-ins (`dir/*.d/*.conf`) there. The first read after the host was
    /// reached (or its lock taken) is what that contact listed: no second command.
    ///
    /// # Errors
    /// [`Error::Backend`] when the host cannot be reached or a file cannot be read.
    pub async fn read_dir(&self, dir: &Path) -> Result<UnitListing, Error> {
        self.connect().await?;
        let kept = self
            .shared
            .listing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((d, listing)) = kept
            && d == dir
        {
            return Ok(listing);
        }
        let d = dir.to_string_lossy();
        let step = format!("read `{d}`");
        let out = self.run(&step, READ_DIR, &[&d], None).await?;
        let text = String::from_utf8_lossy(&out);
        let mut lines = text.lines();
        (lines.next() == Some("L"))
            .then(|| parse_listing(&mut lines))
            .flatten()
            .ok_or_else(|| {
                ssh_error(
                    format!("{step} on host `{}`", self.name),
                    "garbled listing (a file changed while it was read?)",
                )
            })
    }

    /// The text of each of `paths` on the host, `None` for one that does not exist (or is not a
    /// regular file).
    ///
    /// # Errors
    /// [`Error::Backend`] when the host cannot be reached or a file cannot be read.
    pub async fn read_files(&self, paths: &[PathBuf]) -> Result<Vec<Option<String>>, Error> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let args: Vec<String> = paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let step = format!("read `{}`", args.join("`, `"));
        let out = self.run(&step, READ_FILES, &args, None).await?;
        let text = String::from_utf8_lossy(&out);
        parse_files(&text, paths.len()).ok_or_else(|| {
            ssh_error(
                format!("{step} on host `{}`", self.name),
                "garbled answer (a file changed while it was read?)",
            )
        })
    }

    /// Write each file beside its place (owner-only from the first byte for a private one, its
    /// folder made when missing), synced, and return the temp files in order: renaming them
    /// later ([`Remote::commit`]) is atomic. On failure, the temp files made are removed (a
    /// connection lost halfway may leave some behind: hidden, as `.NAME.XXXXXX`).
    ///
    /// # Errors
    /// [`Error::Backend`] naming the host and what the remote shell said.
    pub async fn stage(&self, files: &[Put]) -> Result<Vec<PathBuf>, Error> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let engine = base64::engine::general_purpose::STANDARD;
        let mut input = String::new();
        for f in files {
            input.push_str(&f.path.to_string_lossy());
            input.push('\n');
            input.push_str(if f.private { "600\n" } else { "644\n" });
            let b = engine.encode(&f.bytes);
            for chunk in b.as_bytes().chunks(76) {
                input.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
                input.push('\n');
            }
            input.push_str(".\n");
        }
        let names: Vec<String> = files
            .iter()
            .map(|f| f.path.to_string_lossy().into_owned())
            .collect();
        let step = format!("stage `{}`", names.join("`, `"));
        self.connect().await?;
        let line = sh_line(STAGE, &[]);
        match self.output(&line, Some(input.as_bytes())).await {
            Ok(out) => {
                let made: Vec<PathBuf> = String::from_utf8_lossy(&out)
                    .lines()
                    .map(PathBuf::from)
                    .collect();
                if made.len() != files.len() {
                    self.discard(&made).await;
                    return Err(ssh_error(
                        format!("{step} on host `{}`", self.name),
                        "the files were not all staged",
                    ));
                }
                Ok(made)
            }
            // The script removed what it had made.
            Err(Fault::Ssh(why) | Fault::Command(why)) => {
                Err(ssh_error(format!("{step} on host `{}`", self.name), why))
            }
        }
    }

    /// Remove staged files that will not be placed (best effort).
    pub async fn discard(&self, staged: &[PathBuf]) {
        let steps: Vec<Step> = staged.iter().cloned().map(Step::Remove).collect();
        let _ = self.commit(&steps).await;
    }

    /// Run `steps` in order on the host, in one go.
    ///
    /// # Errors
    /// [`Error::Backend`] naming the host and what the remote shell said; the steps before the
    /// failing one were done.
    pub async fn commit(&self, steps: &[Step]) -> Result<(), Error> {
        if steps.is_empty() {
            return Ok(());
        }
        let mut args: Vec<String> = Vec::new();
        for s in steps {
            match s {
                Step::Remove(p) => args.extend(["r".into(), p.to_string_lossy().into_owned()]),
                Step::Place(tmp, p) => args.extend([
                    "m".into(),
                    tmp.to_string_lossy().into_owned(),
                    p.to_string_lossy().into_owned(),
                ]),
                Step::Sync(d) => args.extend(["s".into(), d.to_string_lossy().into_owned()]),
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run("write files", COMMIT, &args, None).await?;
        Ok(())
    }
}
