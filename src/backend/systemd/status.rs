//! A service's state and how its last run ended, for the proxy's pipelines and the gate.

use super::*;

/// A service's state and how its last run ended, as `GET /pipelines/<name>` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceStatus {
    /// `loaded`, `not-found`, `bad-setting`, ...
    pub load_state: String,
    /// `active`, `activating`, `inactive`, `failed`, ...
    pub active_state: String,
    /// Finer state, as `running`, `start`, `dead`.
    pub sub_state: String,
    /// systemd's verdict on the last run: `success`, `exit-code`, `signal`, `timeout`, ...
    pub result: String,
    /// Exit status (or signal number) of the main process's last run.
    pub exec_main_status: i32,
    /// When the unit last left `inactive` (a run started), µs since the epoch (0: never).
    pub started_us: u64,
    /// When the unit last became `inactive` or `failed` again (a run ended), µs since the epoch
    /// (0: never).
    pub ended_us: u64,
}

impl Systemd {
    /// The state of service `unit` and the result of its last run.
    ///
    /// # Errors
    /// [`Error::Backend`] when systemd does not answer.
    pub async fn service_status(&self, unit: &str) -> Result<ServiceStatus, Error> {
        const SERVICE_IFACE: InterfaceName<'static> =
            InterfaceName::from_static_str_unchecked("org.freedesktop.systemd1.Service");
        let start = Instant::now();
        let step = || format!("read the state of `{unit}`");
        // Loading the unit first gives a not-found unit an object to read `LoadState` from.
        let path = self
            .manager
            .load_unit(unit)
            .await
            .map_err(|e| backend(&step(), dbus_message(&e)))?;
        let props = fdo::PropertiesProxy::builder(&self.conn)
            .destination(SERVICE)
            .path(path)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| backend(&step(), e))?;
        let (u, s) = futures_util::join!(props.get_all(UNIT_IFACE), props.get_all(SERVICE_IFACE));
        self.count(3);
        self.spent(start);
        let u = u.map_err(|e| backend(&step(), e))?;
        // A unit that does not exist has no Service interface to read.
        let s = s.unwrap_or_default();
        fn get<T: TryFrom<OwnedVariant>>(
            all: &HashMap<String, OwnedVariant>,
            k: &str,
        ) -> Option<T> {
            T::try_from(all.get(k)?.try_clone().ok()?).ok()
        }
        Ok(ServiceStatus {
            load_state: get(&u, "LoadState").unwrap_or_default(),
            active_state: get(&u, "ActiveState").unwrap_or_default(),
            sub_state: get(&u, "SubState").unwrap_or_default(),
            result: get(&s, "Result").unwrap_or_default(),
            exec_main_status: get(&s, "ExecMainStatus").unwrap_or_default(),
            started_us: get(&u, "InactiveExitTimestamp").unwrap_or_default(),
            ended_us: get(&u, "InactiveEnterTimestamp").unwrap_or_default(),
        })
    }
}
