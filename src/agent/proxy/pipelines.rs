//! Data pipelines: `[host.proxy.pipelines.<name>]` maps a name to a unit. `POST /pipelines/<name>`
//! with `Authorization: Bearer <token>` starts the unit over D-Bus (202 with the job); a unit
//! already running answers 409, a start sooner than `min_interval` after the last accepted one
//! 429. `GET` (same token) shows the unit's state and its last run's result.
//!
//! Each pipeline's token is read at start from `LABCTL_PIPELINE_TOKEN_<NAME>` (see
//! [`crate::stack::Pipeline::token_var`]); a pipeline without one stops the proxy from starting.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use subtle::ConstantTimeEq;

use super::{Proxy, Reply, agent_error};
use crate::backend::systemd::JobKind;
use crate::error::Error;
use crate::stack::{Pipeline as Settings, Stack};

/// One pipeline, ready to serve.
pub struct Pipeline {
    /// The unit started, as `reading-sync.service`.
    pub unit: String,
    token: Vec<u8>,
    min_interval: Duration,
    /// When the last start was accepted; the lock also makes check-and-start one step.
    last: tokio::sync::Mutex<Option<Instant>>,
}

/// The pipelines by name.
#[derive(Default)]
pub struct Pipelines(BTreeMap<String, Pipeline>);

impl Pipelines {
    /// The pipelines of `stack` (none when the proxy is disabled), each with its token from
    /// `env`.
    ///
    /// # Errors
    /// [`Error::Agent`] naming the variable of a pipeline whose token is unset or empty.
    pub fn from_stack(stack: &Stack, env: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let mut out = BTreeMap::new();
        if !stack.host.proxy.enabled {
            return Ok(Pipelines(out));
        }
        for (name, p) in &stack.host.proxy.pipelines {
            out.insert(name.clone(), Pipeline::new(name, p, &env)?);
        }
        Ok(Pipelines(out))
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Pipeline {
    fn new(name: &str, p: &Settings, env: &impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let var = Settings::token_var(name);
        let token = env(&var).filter(|t| !t.is_empty()).ok_or_else(|| {
            agent_error(format!(
                "`{var}` is not set: it holds the bearer token of pipeline `{name}`"
            ))
        })?;
        // Validation already checked it; a stack loaded otherwise still gets a clear message.
        let min_interval = humantime::parse_duration(&p.min_interval).map_err(|e| {
            agent_error(format!(
                "`host.proxy.pipelines.{name}.min_interval` is not a duration: {e}"
            ))
        })?;
        Ok(Pipeline {
            unit: format!("{}.service", p.unit),
            token: token.into_bytes(),
            min_interval,
            last: tokio::sync::Mutex::new(None),
        })
    }

    /// Whether `authorization` (the header's value) is `Bearer <this pipeline's token>`, compared
    /// in constant time.
    fn authorized(&self, authorization: Option<&str>) -> bool {
        let Some(given) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
            return false;
        };
        bool::from(given.trim().as_bytes().ct_eq(&self.token))
    }
}

fn unauthorized() -> Reply {
    Reply::error(401, "missing or wrong bearer token")
}

/// Whether a unit in `active_state` counts as running (a oneshot job runs while `activating`).
fn running(active_state: &str) -> bool {
    matches!(
        active_state,
        "active" | "activating" | "deactivating" | "reloading" | "refreshing"
    )
}

/// `POST /pipelines/<name>`.
pub async fn start(proxy: &Proxy, name: &str, authorization: Option<&str>) -> Reply {
    let Some(p) = proxy.pipelines.0.get(name) else {
        return Reply::error(404, format!("no pipeline `{name}`"));
    };
    if !p.authorized(authorization) {
        return unauthorized();
    }
    let mut last = p.last.lock().await;
    if let Some(at) = *last {
        let since = at.elapsed();
        if since < p.min_interval {
            let wait = (p.min_interval - since).as_secs().max(1);
            let mut r = Reply::error(
                429,
                format!(
                    "pipeline `{name}` was started {} s ago; at most one start every {}",
                    since.as_secs(),
                    humantime::format_duration(p.min_interval)
                ),
            );
            r.retry_after = Some(wait);
            return r;
        }
    }
    let systemd = match proxy.systemd().await {
        Ok(s) => s,
        Err(e) => return Reply::error(503, e.to_string()),
    };
    let status = match systemd.service_status(&p.unit).await {
        Ok(s) => s,
        Err(e) => {
            proxy.systemd_failed().await;
            return Reply::error(503, e.to_string());
        }
    };
    if running(&status.active_state) {
        return Reply::json(
            409,
            json!({
                "error": format!("`{}` is already running", p.unit),
                "pipeline": name,
                "unit": p.unit,
                "active_state": status.active_state,
                "sub_state": status.sub_state,
            }),
        );
    }
    match systemd.queue_job(JobKind::Start, &p.unit).await {
        Ok(job) => {
            *last = Some(Instant::now());
            tracing::info!(pipeline = name, unit = %p.unit, %job, "started");
            Reply::json(202, json!({ "pipeline": name, "unit": p.unit, "job": job }))
        }
        Err(e) => {
            tracing::warn!(pipeline = name, "{e}");
            Reply::error(502, e.to_string())
        }
    }
}

/// `GET /pipelines/<name>`.
pub async fn status(proxy: &Proxy, name: &str, authorization: Option<&str>) -> Reply {
    let Some(p) = proxy.pipelines.0.get(name) else {
        return Reply::error(404, format!("no pipeline `{name}`"));
    };
    if !p.authorized(authorization) {
        return unauthorized();
    }
    let s = match proxy.systemd().await {
        Ok(s) => s.service_status(&p.unit).await,
        Err(e) => Err(e),
    };
    match s {
        Ok(s) => {
            let time = |us: u64| {
                (us > 0).then(|| {
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + Duration::from_micros(us),
                    )
                    .to_string()
                })
            };
            Reply::json(
                200,
                json!({
                    "pipeline": name,
                    "unit": p.unit,
                    "running": running(&s.active_state),
                    "load_state": s.load_state,
                    "active_state": s.active_state,
                    "sub_state": s.sub_state,
                    "last_result": s.result,
                    "last_exit_status": s.exec_main_status,
                    "last_started_at": time(s.started_us),
                    "last_ended_at": time(s.ended_us),
                }),
            )
        }
        Err(e) => {
            proxy.systemd_failed().await;
            Reply::error(503, e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_are_validated_where_they_are_written() {
        let text = "[stack]\nname = \"s\"\n\
            [host.proxy.pipelines.Bad_Name]\nunit = \"etl\"\n\
            [host.proxy.pipelines.self]\nunit = \"labctl-proxy\"\n\
            [host.proxy.pipelines.slow]\nunit = \"a b\"\nmin_interval = \"soon\"\n";
        let err = crate::stack::parse(std::path::Path::new("stack.toml"), text).unwrap_err();
        let Error::Invalid { problems, .. } = err else {
            panic!("{err}")
        };
        let all: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
        let has = |s: &str| all.iter().any(|m| m.contains(s));
        assert!(has("not a valid pipeline name"), "{all:?}");
        assert!(has("one of labctl's own agents"), "{all:?}");
        assert!(
            has("`host.proxy.pipelines.slow.unit` is not a valid unit name"),
            "{all:?}"
        );
        assert!(
            has("`host.proxy.pipelines.slow.min_interval` is not a duration"),
            "{all:?}"
        );
        assert_eq!(all.len(), 4, "{all:?}");
    }

    #[test]
    fn tokens_come_from_the_environment_and_are_required() {
        let stack: Stack = toml::from_str(
            "[stack]\nname = \"s\"\n[host.proxy.pipelines.nightly-etl]\nunit = \"etl\"\n",
        )
        .unwrap();
        let err = Pipelines::from_stack(&stack, |_| None).err().unwrap();
        assert!(
            err.to_string()
                .contains("`LABCTL_PIPELINE_TOKEN_NIGHTLY_ETL` is not set"),
            "{err}"
        );
        let ps = Pipelines::from_stack(&stack, |v| {
            (v == "LABCTL_PIPELINE_TOKEN_NIGHTLY_ETL").then(|| "tok".to_string())
        })
        .unwrap();
        let p = &ps.0["nightly-etl"];
        assert_eq!(p.unit, "etl.service");
        assert_eq!(p.min_interval, Duration::from_secs(60));
        assert!(p.authorized(Some("Bearer tok")));
        assert!(!p.authorized(Some("Bearer tok2")));
        assert!(!p.authorized(Some("tok")));
        assert!(!p.authorized(None));
    }
}
