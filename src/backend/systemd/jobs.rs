//! Changing what the manager runs: daemon-reload, enable and disable, and jobs (start, stop,
//! restart, reload) queued and awaited through the manager's signals.

use super::*;

impl Systemd {
    /// `daemon-reload`; returns once systemd has re-read every unit file.
    ///
    /// # Errors
    /// [`Error::Backend`] when systemd refuses.
    pub async fn daemon_reload(&self) -> Result<(), Error> {
        let start = Instant::now();
        self.count(1);
        let r = self
            .manager
            .reload()
            .await
            .map_err(|e| backend("daemon-reload", e));
        self.spent(start);
        r
    }

    /// Enable unit files (create their `[Install]` symlinks), replacing conflicting symlinks.
    ///
    /// # Errors
    /// [`Error::Backend`] naming the units when systemd refuses.
    pub async fn enable(&self, units: &[String]) -> Result<(), Error> {
        if units.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        self.count(1);
        let names: Vec<&str> = units.iter().map(String::as_str).collect();
        let r = self.manager.enable_unit_files(&names, false, true).await;
        self.spent(start);
        r.map(|_| ())
            .map_err(|e| backend(&format!("enable `{}`", units.join("`, `")), e))
    }

    /// Disable unit files (remove their `[Install]` symlinks).
    ///
    /// # Errors
    /// [`Error::Backend`] naming the units when systemd refuses.
    pub async fn disable(&self, units: &[String]) -> Result<(), Error> {
        if units.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        self.count(1);
        let names: Vec<&str> = units.iter().map(String::as_str).collect();
        let r = self.manager.disable_unit_files(&names, false).await;
        self.spent(start);
        r.map(|_| ())
            .map_err(|e| backend(&format!("disable `{}`", units.join("`, `")), e))
    }

    /// Queue one job per unit, all at once, and wait for each through `JobRemoved`. systemd orders
    /// them by the units' dependencies; a job whose dependency failed ends as `dependency` while the
    /// others carry on. `queued` is called with each unit whose job systemd accepted (from then on
    /// the job runs to its end even if this process does not: a restart of the caller's own unit
    /// ends it), and `each` as every job ends (for progress).
    ///
    /// # Errors
    /// [`Error::Backend`] when the signal subscription fails or jobs outlast [`JOB_WAIT`]; a job
    /// that fails is an outcome, not an error.
    pub async fn run_jobs(
        &self,
        kind: JobKind,
        units: &[String],
        mut queued: impl FnMut(&str),
        mut each: impl FnMut(&JobOutcome),
    ) -> Result<Vec<JobOutcome>, Error> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        let start = Instant::now();
        let mut guard = self.jobs.lock().await;
        // Subscribed before the first job is queued: a job can finish before its call returns.
        if guard.is_none() {
            *guard = Some(self.subscribe().await?);
        }
        let jobs = guard.as_mut().expect("just set");
        let sent = join_all(units.iter().map(|u| async move {
            let r = match kind {
                JobKind::Start => self.manager.start_unit(u, "replace").await,
                JobKind::Stop => self.manager.stop_unit(u, "replace").await,
                JobKind::Restart => self.manager.restart_unit(u, "replace").await,
                JobKind::Reload => self.manager.reload_unit(u, "replace").await,
            };
            (u.clone(), r)
        }))
        .await;
        self.count(units.len() as u64);
        let mut outcomes = Vec::new();
        let mut pending: BTreeMap<String, String> = BTreeMap::new();
        for (unit, r) in sent {
            match r {
                Ok(job) => {
                    queued(&unit);
                    pending.insert(job.as_str().to_string(), unit);
                }
                Err(e) => {
                    let o = JobOutcome {
                        unit,
                        kind,
                        result: JobResult::NotQueued(dbus_message(&e)),
                    };
                    each(&o);
                    outcomes.push(o);
                }
            }
        }
        let deadline = tokio::time::Instant::now() + JOB_WAIT;
        loop {
            let finished: Vec<String> = pending
                .keys()
                .filter(|j| jobs.done.contains_key(*j))
                .cloned()
                .collect();
            for job in finished {
                let unit = pending.remove(&job).expect("pending");
                let (_, result) = jobs.done.remove(&job).expect("done");
                let o = JobOutcome {
                    unit,
                    kind,
                    result: JobResult::Ran(result),
                };
                each(&o);
                outcomes.push(o);
            }
            if pending.is_empty() {
                break;
            }
            match tokio::time::timeout_at(deadline, jobs.rx.recv()).await {
                Ok(Some((job, unit, result))) => {
                    jobs.done.insert(job, (unit, result));
                }
                Ok(None) => {
                    self.spent(start);
                    return Err(backend(
                        &format!("wait for {} jobs", kind.verb()),
                        "the D-Bus connection closed",
                    ));
                }
                Err(_) => {
                    self.spent(start);
                    let units: Vec<&str> = pending.values().map(String::as_str).collect();
                    return Err(backend(
                        &format!("wait for {} jobs", kind.verb()),
                        format!(
                            "`{}` still queued after {} s",
                            units.join("`, `"),
                            JOB_WAIT.as_secs()
                        ),
                    ));
                }
            }
        }
        self.spent(start);
        Ok(outcomes)
    }

    async fn subscribe(&self) -> Result<Jobs, Error> {
        let mut stream = self
            .manager
            .receive_job_removed()
            .await
            .map_err(|e| backend("watch JobRemoved", e))?;
        self.manager
            .subscribe()
            .await
            .map_err(|e| backend("subscribe to systemd's signals", e))?;
        // `AddMatch` for the stream, then `Subscribe`.
        self.count(2);
        let (tx, rx) = mpsc::unbounded_channel();
        let drain = tokio::spawn(async move {
            while let Some(signal) = stream.next().await {
                if let Ok(a) = signal.args()
                    && tx
                        .send((
                            a.job().to_string(),
                            a.unit().to_string(),
                            a.result().to_string(),
                        ))
                        .is_err()
                {
                    break;
                }
            }
        });
        Ok(Jobs {
            rx,
            done: HashMap::new(),
            drain,
        })
    }

    /// Whether the manager answers (`org.freedesktop.DBus.Peer.Ping`).
    ///
    /// # Errors
    /// [`Error::Backend`] when it does not.
    pub async fn ping(&self) -> Result<(), Error> {
        let start = Instant::now();
        self.count(1);
        let r = async {
            fdo::PeerProxy::builder(&self.conn)
                .destination(SERVICE)
                .path("/org/freedesktop/systemd1")
                .cache_properties(CacheProperties::No)
                .build()
                .await?
                .ping()
                .await
        }
        .await
        .map_err(|e| backend("ping the manager", dbus_message(&e)));
        self.spent(start);
        r
    }

    /// Queue one job on `unit` and return its object path at once, without waiting for it.
    ///
    /// # Errors
    /// [`Error::Backend`] with systemd's reason when it refuses to queue the job (no such unit, a
    /// bad unit file).
    pub async fn queue_job(&self, kind: JobKind, unit: &str) -> Result<String, Error> {
        let start = Instant::now();
        self.count(1);
        let r = match kind {
            JobKind::Start => self.manager.start_unit(unit, "replace").await,
            JobKind::Stop => self.manager.stop_unit(unit, "replace").await,
            JobKind::Restart => self.manager.restart_unit(unit, "replace").await,
            JobKind::Reload => self.manager.reload_unit(unit, "replace").await,
        };
        self.spent(start);
        r.map(|job| job.as_str().to_string())
            .map_err(|e| backend(&format!("{} `{unit}`", kind.verb()), dbus_message(&e)))
    }

    /// A timer that lives only in the manager, firing once `after` from now and running `argv`
    /// as a oneshot service of the same name (`NAME.service`): a dead-man switch, cancelled by
    /// stopping the timer ([`Systemd::queue_job`] with [`JobKind::Stop`]). Both go away once
    /// they have run.
    ///
    /// # Errors
    /// [`Error::Backend`] with systemd's refusal.
    pub async fn start_transient_timer(
        &self,
        name: &str,
        after: Duration,
        description: &str,
        argv: &[String],
    ) -> Result<(), Error> {
        use zbus::Variant as Value;
        let Some(program) = argv.first() else {
            return Err(backend(
                &format!("start `{name}.timer`"),
                "no command to run",
            ));
        };
        let start = Instant::now();
        self.count(1);
        let usec = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let timer = [
            ("Description", Value::from(description)),
            ("OnActiveSec", Value::from(usec(after))),
            // The default (a minute) would let the switch fire up to a minute late.
            (
                "AccuracyUSec",
                Value::from(usec(Duration::from_millis(100))),
            ),
            ("RemainAfterElapse", Value::from(false)),
        ];
        let exec = vec![(program.clone(), argv.to_vec(), false)];
        let service = vec![
            ("Description", Value::from(description)),
            ("Type", Value::from("oneshot")),
            ("ExecStart", Value::from(exec)),
        ];
        let service_name = format!("{name}.service");
        let r = self
            .manager
            .start_transient_unit(
                &format!("{name}.timer"),
                "replace",
                &timer,
                &[(service_name.as_str(), service)],
            )
            .await;
        self.spent(start);
        r.map(|_| ())
            .map_err(|e| backend(&format!("start `{name}.timer`"), dbus_message(&e)))
    }
}
