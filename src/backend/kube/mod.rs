//! The Kubernetes backend: the only module that imports `kube`. It connects, discovers once,
//! lists, gets, applies and deletes, and counts every request; it decides nothing (what to
//! compare, apply or prune is decided in [`crate::plan::kube`] and [`crate::plan::diff`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{StreamExt as _, TryStreamExt as _};
use kube::api::{DeleteParams, GetParams, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::Request;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use kube::{Client, Config};
use serde_json::Value;

mod lease;
mod objects;
mod observe;

pub use observe::Listing;

use super::Stats;
use crate::error::{ApiStatus, Error};
use crate::observed::{DryRun, DryRunError, FIELD_MANAGER, Observed};
use crate::resource::{At, ResourceId};

/// How to reach the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connect {
    /// A kubeconfig file (`--kubeconfig`); otherwise `KUBECONFIG`, `~/.kube/config`, then the
    /// in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// A context in the kubeconfig other than its current one (`--context`).
    pub context: Option<String>,
}

/// A connected, discovered cluster. Clones share the connection, the discovery and the counts.
#[derive(Clone)]
pub struct Kube {
    client: Client,
    discovery: Arc<std::sync::RwLock<Discovery>>,
    stats: Arc<Mutex<Stats>>,
}

/// A cluster as one run reaches it: connected (and discovered) on first use, then shared by all
/// the run does there, observing for the plan, holding the lock's Lease and applying, so that a
/// run connects once.
#[derive(Clone, Default)]
pub struct Cluster {
    connect: Connect,
    client: Arc<tokio::sync::OnceCell<Kube>>,
}

impl Cluster {
    /// The cluster `connect` reaches, not connected yet.
    pub fn new(connect: Connect) -> Self {
        Cluster {
            connect,
            client: Arc::default(),
        }
    }

    /// How it is reached.
    pub fn how(&self) -> &Connect {
        &self.connect
    }

    /// Whether a client is connected already (its requests so far belong to earlier steps).
    pub fn is_connected(&self) -> bool {
        self.client.initialized()
    }

    /// The shared client, connecting on the first call.
    ///
    /// # Errors
    /// As [`Kube::connect`].
    pub async fn client(&self) -> Result<Kube, Error> {
        self.client
            .get_or_try_init(|| Kube::connect(&self.connect))
            .await
            .cloned()
    }
}

impl PartialEq for Cluster {
    fn eq(&self, other: &Self) -> bool {
        self.connect == other.connect
    }
}

impl Eq for Cluster {}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("connect", &self.connect)
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// kube-rs quotes the path of an unreadable kubeconfig twice (`'"/root/.kube/config"'`): the
/// path and the cause, to say it once.
fn read_failure<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> Option<(&'e std::io::Error, &'e std::path::Path)> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(kube::config::KubeconfigError::ReadConfig(io, path)) = err.downcast_ref() {
            return Some((io, path));
        }
        cur = err.source();
    }
    None
}

fn backend(step: impl Into<String>, cause: impl Into<crate::error::Cause>) -> Error {
    Error::backend("kube", step, cause)
}

/// The server's answer inside a client error, when the server refused (its `Status`): the code,
/// the message, and for a server-side apply conflict each field with the manager that owns it.
fn api_status(e: &kube::Error) -> Option<ApiStatus> {
    let kube::Error::Api(status) = e else {
        return None;
    };
    let conflicts = (status.details.as_ref())
        .map(|d| {
            (d.causes.iter())
                .filter(|c| c.reason == "FieldManagerConflict")
                .map(|c| {
                    let manager = c
                        .message
                        .strip_prefix("conflict with ")
                        .unwrap_or(&c.message)
                        .trim_matches('"');
                    let manager = manager.split('"').next().unwrap_or(manager);
                    (c.field.clone(), manager.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    Some(ApiStatus {
        code: status.code,
        message: status.message.clone(),
        conflicts,
    })
}

/// A failed request as an error: the server's answer as data when it answered, the client's
/// error as the cause otherwise.
fn failed(step: impl Into<String>, e: kube::Error) -> Error {
    match api_status(&e) {
        Some(status) => Error::Api {
            step: step.into(),
            status,
        },
        None => backend(step, e),
    }
}

/// The server's message for `e`, as `-v` details and notes show it.
fn api_message(e: &kube::Error) -> String {
    api_status(e).map_or_else(|| e.to_string(), |s| s.to_string())
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}

impl Connect {
    /// Whether any cluster is configured at all: a kubeconfig given, in `KUBECONFIG` or at
    /// `~/.kube/config`, or the in-cluster service account's environment.
    pub fn configured(&self) -> bool {
        self.kubeconfig.is_some()
            || self.context.is_some()
            || std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty())
            || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
            || std::env::var_os("HOME")
                .is_some_and(|h| PathBuf::from(h).join(".kube/config").is_file())
    }
}

/// Answers at least this long are parsed on a blocking thread rather than the runtime's.
/// The longest labctl waits for the API server's answer to one request (a LIST of a thousand
/// objects on a loaded k3s takes a second or two).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const PARSE_APART: usize = 64 * 1024;

impl Kube {
    /// Connect and run discovery (aggregated: two requests; older servers: one per group version).
    ///
    /// # Errors
    /// [`Error::Backend`] when no configuration is found, the kubeconfig or context is invalid,
    /// or the server cannot be reached.
    pub async fn connect(how: &Connect) -> Result<Self, Error> {
        let started = Instant::now();
        let options = KubeConfigOptions {
            context: how.context.clone(),
            ..Default::default()
        };
        let config = match &how.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path).map_err(|e| {
                    let why = read_failure(&e).map_or(e.to_string(), |(io, _)| io.to_string());
                    backend(format!("read kubeconfig `{}`", path.display()), why)
                })?;
                Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .map_err(|e| backend(format!("load kubeconfig `{}`", path.display()), e))?
            }
            None if how.context.is_some() => Config::from_kubeconfig(&options)
                .await
                .map_err(|e| backend("load kubeconfig", e))?,
            None => Config::infer().await.map_err(|e| {
                let why = read_failure(&e).map_or(e.to_string(), |(io, p)| {
                    format!("not in a cluster, and cannot read `{}`: {io}", p.display())
                });
                backend(
                    "find a cluster (KUBECONFIG, ~/.kube/config, in-cluster)",
                    why,
                )
            })?,
        };
        let mut config = config;
        // A plain-http server (`kubectl proxy`, the test server) speaks no TLS: an empty set of
        // trust roots spares loading the platform's, most of connecting's own time. Not through
        // a proxy, whose own TLS kube-rs checks against these roots.
        if config.cluster_url.scheme_str() == Some("http")
            && config.root_cert.is_none()
            && config.proxy_url.is_none()
        {
            config.root_cert = Some(Vec::new());
        }
        // A server that stops answering must not hold an apply (or the proxy's sync) forever:
        // kube-rs waits for an answer without end unless told. Counted from when the request is
        // sent, not from when a pooled connection went idle. 429, 503 and 504 are retried by
        // kube-rs itself, honouring `Retry-After` (`Config::default_retry`).
        config.read_timeout = Some(REQUEST_TIMEOUT);
        config.reset_reader_on_write = true;
        let server = config.cluster_url.to_string();
        let client = Client::try_from(config).map_err(|e| backend("create the client", e))?;
        let mut calls = 2;
        let discovery = match Discovery::new(client.clone()).run_aggregated().await {
            Ok(d) => d,
            Err(_) => {
                let d = Discovery::new(client.clone())
                    .run()
                    .await
                    .map_err(|e| backend(format!("discover the API of `{server}`"), e))?;
                calls += 2 + d.groups().map(|g| g.versions().count() as u64).sum::<u64>();
                d
            }
        };
        Ok(Kube {
            client,
            discovery: Arc::new(std::sync::RwLock::new(discovery)),
            stats: Arc::new(Mutex::new(Stats {
                calls,
                elapsed: started.elapsed(),
            })),
        })
    }

    /// Requests sent and time spent since connecting.
    pub fn stats(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn send(&self, step: &str, req: http::Request<Vec<u8>>) -> Result<Value, kube::Error> {
        let started = Instant::now();
        let out = match self.client.request_text(req).await {
            // A LIST answer runs to megabytes: parsed on a thread of its own, the LISTs of a
            // plan are parsed on every core, while the answers still to come arrive.
            Ok(text) if text.len() >= PARSE_APART => {
                tokio::task::spawn_blocking(move || serde_json::from_str::<Value>(&text))
                    .await
                    .map_err(|e| kube::Error::Service(Box::new(e)))
                    .and_then(|r| r.map_err(kube::Error::SerdeError))
            }
            Ok(text) => serde_json::from_str::<Value>(&text).map_err(kube::Error::SerdeError),
            Err(e) => Err(e),
        };
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.calls += 1;
        s.elapsed += started.elapsed();
        drop(s);
        let _ = step;
        out
    }

    /// The served resource for an apiVersion and kind.
    pub fn resource(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Option<(ApiResource, ApiCapabilities)> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        self.discovery
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)?
            .versioned_resources(version)
            .into_iter()
            .find(|(r, _)| r.kind == kind)
    }

    /// The preferred served apiVersion of a group's kind (`apps`, `Deployment` → `apps/v1`).
    pub fn api_version_of(&self, group: &str, kind: &str) -> Option<String> {
        let d = self.discovery.read().unwrap_or_else(|e| e.into_inner());
        let g = d.get(group)?;
        g.recommended_kind(kind).map(|(ar, _)| ar.api_version)
    }

    /// Discover again (aggregated: two requests): after CustomResourceDefinitions are applied,
    /// their kinds become servable within the same run.
    ///
    /// # Errors
    /// [`Error::Backend`] when discovery fails.
    pub async fn rediscover(&self) -> Result<(), Error> {
        let started = Instant::now();
        let d = Discovery::new(self.client.clone())
            .run_aggregated()
            .await
            .map_err(|e| backend("discover the API again", e))?;
        *self.discovery.write().unwrap_or_else(|e| e.into_inner()) = d;
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.calls += 2;
        s.elapsed += started.elapsed();
        Ok(())
    }

    fn request_for(&self, id: &ResourceId) -> Result<(Request, String), Error> {
        let ResourceId::Kube {
            namespace,
            kind,
            name,
            api_version,
        } = id
        else {
            return Err(backend(format!("address {id}"), "not a kube object"));
        };
        let (ar, caps) = self.resource(api_version, kind).ok_or_else(|| {
            backend(
                format!("address {id}"),
                format!("the server does not serve `{api_version}` `{kind}`"),
            )
        })?;
        let ns = match caps.scope {
            Scope::Namespaced => namespace.as_deref(),
            Scope::Cluster => None,
        };
        Ok((Request::new(url_path(&ar, ns)), name.clone()))
    }
}

fn url_path(ar: &ApiResource, namespace: Option<&str>) -> String {
    let ns = namespace
        .map(|n| format!("namespaces/{n}/"))
        .unwrap_or_default();
    if ar.group.is_empty() {
        format!("/api/{}/{ns}{}", ar.version, ar.plural)
    } else {
        format!("/apis/{}/{}/{ns}{}", ar.group, ar.version, ar.plural)
    }
}
