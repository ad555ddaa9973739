//! `labctl agent gate`: Tailscale Funnel on while the proxy is healthy, off otherwise. The only
//! runner of the `tailscale` binary.
//!
//! Each tick probes the health URL, then reads the funnel back (`tailscale funnel status --json`,
//! tailscale's `ipn.ServeConfig`) and corrects it: the truth is read, never remembered. N failed
//! probes in a row turn it off, M healthy ones turn it on. Anything unknown (no health URL, a
//! probe that cannot complete, a status that cannot be read or parsed) counts as off. Only the
//! configured public ports are ever changed; other ports' serve and funnel entries are left alone.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::runtime::Shutdown;
use crate::cli::GateArgs;
use crate::error::Error;
use crate::metric::{Kind, Point};

/// Public ports Tailscale Funnel can listen on.
pub const FUNNEL_PORTS: [u16; 3] = [443, 8443, 10000];

/// Longest a health probe or a `tailscale` call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

fn gate_error(message: impl Into<String>) -> Error {
    Error::Agent {
        agent: "gate",
        message: message.into(),
    }
}

/// One `--funnel PUBLIC:TARGET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Funnel {
    /// Public HTTPS port on the node's Tailscale name.
    pub public: u16,
    /// Local port it forwards to, on 127.0.0.1.
    pub target: u16,
}

impl Funnel {
    /// Parse `8443:8085`.
    ///
    /// # Errors
    /// [`Error::Usage`] when it is not two ports, or the public one is not a Funnel port.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let usage = |why: String| Error::Usage(format!("`--funnel {s}`: {why}"));
        let (p, t) = s
            .split_once(':')
            .ok_or_else(|| usage("expected PUBLIC:TARGET, as `8443:8085`".into()))?;
        let port = |v: &str| {
            v.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| usage(format!("`{v}` is not a port")))
        };
        let f = Funnel {
            public: port(p)?,
            target: port(t)?,
        };
        if !FUNNEL_PORTS.contains(&f.public) {
            return Err(usage(format!(
                "Tailscale Funnel only serves ports 443, 8443 and 10000, not {}",
                f.public
            )));
        }
        Ok(f)
    }

    /// The backend tailscale proxies to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.target)
    }
}

/// tailscale's `ipn.ServeConfig` as `tailscale funnel status --json` prints it (Go field names;
/// `TCP` keyed by port, `Web` and `AllowFunnel` by `host:port`).
#[derive(Debug, Default, Deserialize)]
pub struct ServeConfig {
    /// Ports tailscaled handles, and how.
    #[serde(rename = "TCP", default)]
    pub tcp: BTreeMap<String, TcpPortHandler>,
    /// HTTP handlers by `host:port`, then mount point.
    #[serde(rename = "Web", default)]
    pub web: BTreeMap<String, WebServerConfig>,
    /// `host:port`s open to the internet.
    #[serde(rename = "AllowFunnel", default)]
    pub allow_funnel: BTreeMap<String, bool>,
    /// Configurations of CLI sessions running in the foreground, by session.
    #[serde(rename = "Foreground", default)]
    pub foreground: BTreeMap<String, ServeConfig>,
}

/// `ipn.TCPPortHandler`, the part read here.
#[derive(Debug, Default, Deserialize)]
pub struct TcpPortHandler {
    /// TLS terminated by tailscaled and handed to `Web`.
    #[serde(rename = "HTTPS", default)]
    pub https: bool,
}

/// `ipn.WebServerConfig`.
#[derive(Debug, Default, Deserialize)]
pub struct WebServerConfig {
    /// Handlers by mount point (`/`).
    #[serde(rename = "Handlers", default)]
    pub handlers: BTreeMap<String, HttpHandler>,
}

/// `ipn.HTTPHandler`, the part read here.
#[derive(Debug, Default, Deserialize)]
pub struct HttpHandler {
    /// Reverse proxy target, as `http://127.0.0.1:8085`.
    #[serde(rename = "Proxy", default)]
    pub proxy: Option<String>,
}

fn port_of(host_port: &str) -> Option<u16> {
    host_port.rsplit_once(':')?.1.parse().ok()
}

impl ServeConfig {
    /// Whether anything on public port `port` is open to the internet (here or in a foreground
    /// session).
    pub fn funnel_open(&self, port: u16) -> bool {
        self.allow_funnel
            .iter()
            .any(|(hp, on)| *on && port_of(hp) == Some(port))
            || self.foreground.values().any(|f| f.funnel_open(port))
    }

    /// Whether `f` is on exactly as configured: HTTPS on the port, `/` proxied to the target,
    /// funnel allowed.
    pub fn serves(&self, f: &Funnel) -> bool {
        let https = self.tcp.get(&f.public.to_string()).is_some_and(|t| t.https);
        https
            && self.allow_funnel.iter().any(|(hp, on)| {
                *on && port_of(hp) == Some(f.public)
                    && self
                        .web
                        .get(hp)
                        .and_then(|w| w.handlers.get("/"))
                        .and_then(|h| h.proxy.as_deref())
                        .is_some_and(|p| p.trim_end_matches('/') == f.url())
            })
    }
}

/// The gate's health memory: consecutive results decide, with hysteresis.
#[derive(Debug, Default)]
struct Health {
    on: bool,
    successes: u32,
    failures: u32,
}

impl Health {
    fn observe(&mut self, ok: bool, need_ok: u32, need_fail: u32) {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= need_ok {
                self.on = true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= need_fail {
                self.on = false;
            }
        }
    }
}

struct Gate {
    args: GateArgs,
    funnels: Vec<Funnel>,
    client: Option<
        hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            http_body_util::Empty<hyper::body::Bytes>,
        >,
    >,
    health: Health,
    published: bool,
    transitions: u64,
}

impl Gate {
    async fn probe(&self) -> Result<(), String> {
        let (Some(client), Some(url)) = (&self.client, &self.args.health_url) else {
            return Err("no --health-url: health unknown".into());
        };
        let uri: http::Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
        let call = client.get(uri);
        match tokio::time::timeout(CALL_TIMEOUT.min(self.args.interval), call).await {
            Ok(Ok(r)) if r.status().is_success() => Ok(()),
            Ok(Ok(r)) => Err(format!("`{url}` answered {}", r.status())),
            Ok(Err(e)) => Err(format!("`{url}`: {e}")),
            Err(_) => Err(format!("`{url}` did not answer in time")),
        }
    }

    async fn tailscale(&self, args: &[String]) -> Result<Vec<u8>, String> {
        let bin = &self.args.tailscale_bin;
        let shown = format!("`{} {}`", bin.display(), args.join(" "));
        let run = tokio::process::Command::new(bin)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(CALL_TIMEOUT, run).await {
            Ok(Ok(o)) if o.status.success() => Ok(o.stdout),
            Ok(Ok(o)) => Err(format!(
                "{shown} failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Ok(Err(e)) => Err(format!("cannot run {shown}: {e}")),
            Err(_) => Err(format!(
                "{shown} did not finish within {} s",
                CALL_TIMEOUT.as_secs()
            )),
        }
    }

    async fn status(&self) -> Result<ServeConfig, String> {
        let out = self
            .tailscale(&["funnel".into(), "status".into(), "--json".into()])
            .await?;
        let text = String::from_utf8_lossy(&out);
        if text.trim().is_empty() {
            // Nothing served prints nothing on some versions.
            return Ok(ServeConfig::default());
        }
        serde_json::from_str(&text)
            .map_err(|e| format!("cannot parse `tailscale funnel status --json`: {e}"))
    }

    async fn turn_on(&self, f: &Funnel) -> Result<(), String> {
        self.tailscale(&[
            "funnel".into(),
            "--bg".into(),
            format!("--https={}", f.public),
            f.url(),
        ])
        .await
        .map(|_| ())
    }

    async fn turn_off(&self, f: &Funnel) -> Result<(), String> {
        self.tailscale(&[
            "funnel".into(),
            format!("--https={}", f.public),
            "off".into(),
        ])
        .await
        .map(|_| ())
    }

    /// Make the funnels match `want`, from what the status says now. Returns whether every
    /// funnel is on afterwards.
    async fn reconcile(&self, want: bool) -> bool {
        let status = match self.status().await {
            Ok(s) => s,
            Err(e) => {
                // Fail closed: what cannot be read is turned off.
                tracing::warn!("{e}; turning the funnel off");
                for f in &self.funnels {
                    if let Err(e) = self.turn_off(f).await {
                        tracing::warn!("{e}");
                    }
                }
                return false;
            }
        };
        let mut all_on = !self.funnels.is_empty();
        for f in &self.funnels {
            let serves = status.serves(f);
            let open = status.funnel_open(f.public);
            if want && !serves {
                tracing::info!(
                    public = f.public,
                    target = f.target,
                    "turning the funnel on"
                );
                if let Err(e) = self.turn_on(f).await {
                    tracing::warn!("{e}");
                    all_on = false;
                }
            } else if !want && open {
                tracing::info!(public = f.public, "turning the funnel off");
                if let Err(e) = self.turn_off(f).await {
                    tracing::warn!("{e}");
                }
                all_on = false;
            } else if !want {
                all_on = false;
            }
        }
        all_on && want
    }

    fn record(&mut self, published: bool) {
        if published != self.published {
            self.transitions += 1;
            tracing::info!(published, "funnel {}", if published { "on" } else { "off" });
        }
        self.published = published;
        crate::telemetry::record(&points(published, self.transitions));
    }
}

/// The gate's metric points: the funnel's state and the transitions so far.
pub fn points(published: bool, transitions: u64) -> Vec<Point> {
    vec![
        Point::new(
            "labctl.gate.funnel.enabled",
            "1",
            "Whether the Tailscale Funnel to the proxy is on (1) or off (0)",
            Kind::Gauge,
            if published { 1.0 } else { 0.0 },
        ),
        Point::new(
            "labctl.gate.funnel.transitions",
            "{transition}",
            "Times the funnel went on or off",
            Kind::Counter,
            transitions as f64,
        ),
    ]
}

/// Run the gate until `shutdown`; on the way out the funnel goes off.
///
/// # Errors
/// [`Error::Usage`] for a bad `--funnel`, a duplicate public port, or zero
/// `--failures`/`--successes`.
pub async fn run(config: GateArgs, shutdown: Shutdown) -> Result<(), Error> {
    let mut reload = shutdown.clone();
    let mut funnels: Vec<Funnel> = Vec::new();
    for f in &config.funnel {
        let f = Funnel::parse(f)?;
        if funnels.iter().any(|g| g.public == f.public) {
            return Err(Error::Usage(format!(
                "`--funnel`: public port {} is given twice",
                f.public
            )));
        }
        funnels.push(f);
    }
    if config.failures == 0 || config.successes == 0 {
        return Err(Error::Usage(
            "`--failures` and `--successes` must be at least 1".into(),
        ));
    }
    if config.interval.is_zero() {
        return Err(Error::Usage("`--interval` must be more than 0".into()));
    }
    if let Some(u) = &config.health_url
        && !u.starts_with("http://")
    {
        return Err(gate_error(format!(
            "`--health-url {u}`: only http:// URLs are probed (the proxy listens on the host)"
        )));
    }
    if config.health_url.is_none() {
        tracing::warn!("no --health-url: the proxy's health is unknown, the funnel stays off");
    }
    let client = config.health_url.as_ref().map(|_| {
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http()
    });
    let mut gate = Gate {
        args: config,
        funnels,
        client,
        health: Health::default(),
        published: false,
        transitions: 0,
    };
    gate.record(false);
    shutdown.ready();
    let mut tick = tokio::time::interval(gate.args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
            () = reload.reloaded() => {
                tracing::info!("reload: nothing to re-read; the next tick reads the funnel back");
                continue;
            }
        }
        let probe = gate.probe().await;
        if let Err(e) = &probe
            && gate.health.on
        {
            tracing::warn!("health probe failed: {e}");
        }
        gate.health
            .observe(probe.is_ok(), gate.args.successes, gate.args.failures);
        let want = gate.health.on;
        let published = gate.reconcile(want).await;
        gate.record(published);
    }
    tracing::info!("stopping: turning the funnel off");
    let published = gate.reconcile(false).await;
    gate.record(published);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tailscale funnel status --json` with a funnel on 8443 to the proxy and a tailnet-only
    /// serve on 443.
    const STATUS: &str = r#"{
  "TCP": {
    "443": { "HTTPS": true },
    "8443": { "HTTPS": true }
  },
  "Web": {
    "lab.tail1234.ts.net:443": { "Handlers": { "/": { "Proxy": "http://127.0.0.1:3000" } } },
    "lab.tail1234.ts.net:8443": { "Handlers": { "/": { "Proxy": "http://127.0.0.1:8085" } } }
  },
  "AllowFunnel": { "lab.tail1234.ts.net:8443": true }
}"#;

    #[test]
    fn status_is_read_per_port() {
        let s: ServeConfig = serde_json::from_str(STATUS).unwrap();
        let f = Funnel::parse("8443:8085").unwrap();
        assert!(s.serves(&f));
        assert!(s.funnel_open(8443));
        assert!(!s.funnel_open(443));
        assert!(!s.serves(&Funnel::parse("8443:9999").unwrap()));
        assert!(!s.serves(&Funnel::parse("443:3000").unwrap()));
        let empty: ServeConfig = serde_json::from_str("{}").unwrap();
        assert!(!empty.serves(&f) && !empty.funnel_open(8443));
    }

    #[test]
    fn funnel_flags_are_checked() {
        assert_eq!(
            Funnel::parse("10000:8085").unwrap(),
            Funnel {
                public: 10000,
                target: 8085
            }
        );
        for bad in ["8080:8085", "8443", "8443:x", "x:8085", "8443:0"] {
            assert!(Funnel::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hysteresis() {
        let mut h = Health::default();
        h.observe(true, 2, 3);
        assert!(!h.on);
        h.observe(true, 2, 3);
        assert!(h.on);
        h.observe(false, 2, 3);
        h.observe(false, 2, 3);
        assert!(h.on);
        h.observe(true, 2, 3);
        h.observe(false, 2, 3);
        h.observe(false, 2, 3);
        assert!(h.on);
        h.observe(false, 2, 3);
        assert!(!h.on);
    }

    #[test]
    fn points_carry_state_and_transitions() {
        let p = points(true, 3);
        assert_eq!(p[0].name, "labctl.gate.funnel.enabled");
        assert_eq!(p[0].value, 1.0);
        assert_eq!(p[1].kind, Kind::Counter);
        assert_eq!(p[1].value, 3.0);
    }
}
