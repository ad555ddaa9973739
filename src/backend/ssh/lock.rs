//! A host's lock: `flock` held on the host by a command that runs as long as labctl holds it.

use super::*;

/// A held host lock: released when dropped (its ssh ends) or by [`HostLock::release`].
#[derive(Debug)]
pub struct HostLock {
    host: String,
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
}

impl HostLock {
    /// Why the lock went before it was let go (the connection was lost), if it did.
    pub fn lost(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(_)) => Some(format!(
                "the lock on host `{}` went with its connection",
                self.host
            )),
            _ => None,
        }
    }

    /// Let the lock go: its command sees the end of its input and exits, and with it the lock.
    pub async fn release(mut self) {
        drop(self.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// Why a host lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another holder has it: what its file says about it.
    Busy(String),
    /// The host could not be asked.
    Failed(Error),
}

impl Remote {
    /// The folder host locks are in for the manager of `scope`: the user's runtime folder, or
    /// `/run/lock` (as on this machine).
    fn lock_dir(&self) -> String {
        match self.scope {
            Scope::System => "/run/lock/labctl".to_string(),
            Scope::User => {
                let runtime = self.var("XDG_RUNTIME_DIR").unwrap_or_else(|| {
                    format!("/run/user/{}", self.var("UID").unwrap_or_default())
                });
                format!("{runtime}/labctl")
            }
        }
    }

    /// Who holds the host lock `file` of the host's manager (what its holder wrote), or `None`
    /// when it is free.
    ///
    /// # Errors
    /// [`Error::Backend`] when the host cannot be asked.
    pub async fn lock_holder(&self, file: &str) -> Result<Option<String>, Error> {
        self.connect().await?;
        let dir = self.lock_dir();
        let out = self
            .run("read the lock", LOCK_HOLDER, &[&dir, file], None)
            .await?;
        let text = String::from_utf8_lossy(&out);
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("busy"))
            .map(|h| h.trim().to_string()))
    }

    /// Take the host lock `file` in the folder the host's manager keeps it in (the user's
    /// runtime folder, or `/run/lock`), as `holder` (one line), waiting up to `wait` for another
    /// holder. Once taken, the unit folder is read under it, for the plan that comes next.
    ///
    /// # Errors
    /// [`LockError::Busy`] with what the current holder wrote; [`LockError::Failed`] when the
    /// host cannot be asked.
    pub async fn lock(
        &self,
        file: &str,
        holder: &str,
        wait: Duration,
    ) -> Result<HostLock, LockError> {
        let step = || format!("take the lock on host `{}`", self.name);
        self.connect().await.map_err(LockError::Failed)?;
        let dir = self.lock_dir();
        let secs = wait.as_secs().to_string();
        let unit_dir = self.unit_dir().unwrap_or_default();
        let units = unit_dir.to_string_lossy();
        let mut c = self.command(&script_line(LOCK, &[&dir, file, &secs, &units]));
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .map_err(|e| LockError::Failed(ssh_error(step(), e)))?;
        let mut stdin = child.stdin.take();
        if let Some(pipe) = stdin.as_mut() {
            let _ = pipe.write_all(format!("{holder}\n").as_bytes()).await;
        }
        let Some(out) = child.stdout.take() else {
            return Err(LockError::Failed(ssh_error(step(), "no output")));
        };
        let mut lines = tokio::io::BufReader::new(out).lines();
        match lines.next_line().await {
            Ok(Some(l)) if l == "locked" => {
                // The unit folder as it is under the lock: the plan starts from it. Five `.`
                // lines end a listing.
                let mut text = String::new();
                let mut dots = 0;
                while dots < 5 {
                    match lines.next_line().await {
                        Ok(Some(l)) => {
                            dots += usize::from(l == ".");
                            text.push_str(&l);
                            text.push('\n');
                        }
                        _ => break,
                    }
                }
                let mut listing = text.lines();
                if listing.next() == Some("L")
                    && let Some(found) = parse_listing(&mut listing)
                {
                    self.keep_listing(&unit_dir, found);
                }
                Ok(HostLock {
                    host: self.name.clone(),
                    child,
                    stdin,
                })
            }
            Ok(Some(l)) if l.starts_with("busy") => {
                let _ = child.wait().await;
                Err(LockError::Busy(
                    l.trim_start_matches("busy").trim().to_string(),
                ))
            }
            _ => {
                drop(stdin);
                let out = child.wait_with_output().await;
                let (code, stderr) = match &out {
                    Ok(o) => (
                        o.status.code(),
                        String::from_utf8_lossy(&o.stderr).into_owned(),
                    ),
                    Err(e) => (None, e.to_string()),
                };
                let why = last_line(&stderr).unwrap_or_else(|| "no answer".into());
                if code == Some(255) {
                    self.heard(&why);
                }
                Err(LockError::Failed(ssh_error(step(), why)))
            }
        }
    }
}
