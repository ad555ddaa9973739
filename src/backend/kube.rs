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

/// What the LISTs of a plan found so far ([`Kube::list`]), and how each kind was read, so that
/// a later call for more kinds or namespaces reads only what is new.
#[derive(Default)]
pub struct Listing {
    objects: BTreeMap<ResourceId, Value>,
    /// Kinds read, across namespaces or per namespace, and kinds the server does not serve.
    read: BTreeSet<(String, String)>,
    unknown_kinds: BTreeSet<(String, String)>,
    /// Kinds this account may LIST only per namespace: the 403's message, and the namespaces
    /// listed so far.
    per_namespace: Vec<(ApiResource, String, BTreeSet<String>)>,
    /// A kind and namespace this account may not LIST even there, with the server's message.
    denied: Vec<(String, String, String)>,
    details: Vec<String>,
}

impl Listing {
    /// The objects of a LIST answer of `ar`, by id.
    fn add(&mut self, ar: &ApiResource, mut list: Value) {
        let Value::Array(items) = list["items"].take() else {
            return;
        };
        for mut item in items {
            // LIST items carry no apiVersion/kind of their own.
            item["apiVersion"] = Value::String(ar.api_version.clone());
            item["kind"] = Value::String(ar.kind.clone());
            if let Some(id) = crate::resource::kube_id(&item) {
                self.objects.insert(id, item);
            }
        }
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

    /// LIST the stack's objects (its `selector`) of each kind in `kinds` across all namespaces,
    /// adding them to `listing`. Kinds and namespaces `listing` has read already are not read
    /// again: a plan lists what the stack applied before while it renders, then only what the
    /// rendered stack adds.
    ///
    /// An account that may not LIST a kind across namespaces (403) LISTs it in each of
    /// `namespaces` instead; a cluster-scoped kind it may not LIST is left to [`Kube::observe`]
    /// to read by GETs of the desired objects.
    ///
    /// # Errors
    /// [`Error::Backend`] naming the LIST that failed.
    pub async fn list(
        &self,
        selector: &str,
        kinds: &BTreeSet<(String, String)>,
        namespaces: &BTreeSet<String>,
        listing: &mut Listing,
    ) -> Result<(), Error> {
        let lp = ListParams::default().labels(selector);
        let mut lists = Vec::new();
        for kind in kinds {
            if !listing.read.insert(kind.clone()) {
                continue;
            }
            let (api_version, kind) = kind;
            let Some((ar, caps)) = self.resource(api_version, kind) else {
                listing
                    .unknown_kinds
                    .insert((api_version.clone(), kind.clone()));
                continue;
            };
            let lp = &lp;
            lists.push(async move {
                let step = format!("list {}", ar.plural);
                let req = Request::new(url_path(&ar, None))
                    .list(lp)
                    .map_err(|e| backend(&step, e))?;
                match self.send(&step, req).await {
                    Ok(list) => Ok::<_, Error>((ar, caps, Ok(list))),
                    Err(e) if is_forbidden(&e) => Ok((ar, caps, Err(api_message(&e)))),
                    Err(e) => Err(failed(&step, e)),
                }
            });
        }
        // The LISTs are independent: wall time is the slowest one, not their sum.
        for (ar, caps, list) in futures_util::future::try_join_all(lists).await? {
            match list {
                Ok(list) => listing.add(&ar, list),
                Err(why) if matches!(caps.scope, Scope::Cluster) => listing.details.push(format!(
                    "kube: listing `{}` is forbidden for this account ({why}); reading the \
                     stack's own by name instead",
                    ar.plural
                )),
                // An account limited to namespaces: LIST in each namespace the stack uses.
                Err(why) => listing.per_namespace.push((ar, why, BTreeSet::new())),
            }
        }
        let todo: Vec<(usize, ApiResource, String)> = (listing.per_namespace.iter().enumerate())
            .flat_map(|(i, (ar, _, done))| {
                let new = namespaces.difference(done);
                new.map(move |ns| (i, ar.clone(), ns.clone()))
            })
            .collect();
        let per_ns = todo.into_iter().map(|(i, ar, ns)| {
            let lp = &lp;
            async move {
                let step = format!("list {} in namespace {ns}", ar.plural);
                let req = Request::new(url_path(&ar, Some(&ns)))
                    .list(lp)
                    .map_err(|e| backend(&step, e))?;
                match self.send(&step, req).await {
                    Ok(list) => Ok::<_, Error>((i, ar, ns, Ok(list))),
                    Err(e) if is_forbidden(&e) => Ok((i, ar, ns, Err(api_message(&e)))),
                    Err(e) => Err(failed(&step, e)),
                }
            }
        });
        for (i, ar, ns, list) in futures_util::future::try_join_all(per_ns).await? {
            listing.per_namespace[i].2.insert(ns.clone());
            match list {
                Ok(list) => listing.add(&ar, list),
                Err(why) => listing.denied.push((ar.kind, ns, why)),
            }
        }
        Ok(())
    }

    /// Observe the stack from what [`Kube::list`] found: then one GET for each id in `desired`
    /// the lists did not return (skipped when its namespace is itself desired and absent:
    /// nothing can exist in it). A desired object this account may not read at all is
    /// returned in [`Observed::forbidden`]. Each fallback taken is said in
    /// [`Observed::details`].
    ///
    /// # Errors
    /// [`Error::Backend`] naming the GET that failed.
    pub async fn observe(
        &self,
        listing: Listing,
        desired: &[ResourceId],
    ) -> Result<Observed, Error> {
        let Listing {
            objects,
            unknown_kinds,
            mut details,
            per_namespace,
            denied,
            ..
        } = listing;
        for (ar, why, namespaces) in &per_namespace {
            details.push(format!(
                "kube: listing `{}` across namespaces is forbidden for this account ({why}); \
                 listing in {} instead",
                ar.plural,
                namespaces
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let mut out = Observed {
            objects,
            unknown_kinds,
            details,
            ..Observed::default()
        };
        // Desired objects in a namespace the account may not list: not observable.
        for id in desired {
            if let ResourceId::Kube {
                namespace: Some(ns),
                kind,
                ..
            } = id
                && let Some((_, _, why)) = denied.iter().find(|(k, n, _)| k == kind && n == ns)
            {
                out.forbidden.insert(id.clone(), why.clone());
            }
        }
        let servable = |id: &ResourceId| match id {
            ResourceId::Kube {
                kind, api_version, ..
            } => self.resource(api_version, kind).is_some(),
            ResourceId::Systemd { .. } | ResourceId::EnvFile { .. } => false,
        };
        let missing: Vec<&ResourceId> = desired
            .iter()
            .filter(|id| {
                !out.objects.contains_key(*id) && !out.forbidden.contains_key(*id) && servable(id)
            })
            .collect();
        // Namespaces first: one that does not exist spares the GETs of everything in it.
        let mut gone_namespaces = BTreeSet::new();
        for id in missing.iter().filter(|id| id.kind() == Some("Namespace")) {
            match self.get_allowed(id).await? {
                Ok(Some(obj)) => {
                    out.objects.insert((*id).clone(), obj);
                }
                Ok(None) => {
                    if let ResourceId::Kube { name, .. } = id {
                        gone_namespaces.insert(name.clone());
                    }
                }
                Err(why) => {
                    out.forbidden.insert((*id).clone(), why);
                }
            }
        }
        let gets = missing.into_iter().filter(|id| {
            id.kind() != Some("Namespace")
                && !matches!(id, ResourceId::Kube { namespace: Some(ns), .. } if gone_namespaces.contains(ns))
        });
        let found: Vec<(ResourceId, Result<Option<Value>, String>)> =
            futures_util::stream::iter(gets)
                .map(|id| async move { Ok::<_, Error>((id.clone(), self.get_allowed(id).await?)) })
                .buffer_unordered(8)
                .try_collect()
                .await?;
        for (id, obj) in found {
            match obj {
                Ok(Some(obj)) => {
                    out.objects.insert(id, obj);
                }
                Ok(None) => {}
                Err(why) => {
                    out.forbidden.insert(id, why);
                }
            }
        }
        Ok(out)
    }

    /// GET one object: `Ok(None)` when it does not exist, `Err(message)` when this account may
    /// not read it (403).
    async fn get_allowed(&self, id: &ResourceId) -> Result<Result<Option<Value>, String>, Error> {
        let step = format!("get {id}");
        let (r, name) = self.request_for(id)?;
        let req = r
            .get(&name, &GetParams::default())
            .map_err(|e| backend(&step, e))?;
        match self.send(&step, req).await {
            Ok(v) => Ok(Ok(Some(v))),
            Err(e) if is_not_found(&e) => Ok(Ok(None)),
            Err(e) if is_forbidden(&e) => Ok(Err(api_message(&e))),
            Err(e) => Err(failed(step, e)),
        }
    }

    /// The server's OpenAPI v3 documents of `group_versions` (as `api/v1`, `apis/apps/v1`),
    /// raw: the index, then each document.
    ///
    /// # Errors
    /// [`Error::Backend`] when the index or a document cannot be read, or the server does not
    /// describe a group-version.
    pub async fn openapi(&self, group_versions: &BTreeSet<String>) -> Result<Vec<Value>, Error> {
        let get = |path: String| {
            let step = format!("read the OpenAPI v3 document `{path}`");
            async move {
                let req = http::Request::get(path.as_str())
                    .header("Accept", "application/json")
                    .body(Vec::new())
                    .map_err(|e| backend(&step, e))?;
                self.send(&step, req).await.map_err(|e| failed(&step, e))
            }
        };
        let index = get("/openapi/v3".to_string()).await?;
        let docs = group_versions.iter().map(|gv| {
            let url = index
                .pointer(&format!(
                    "/paths/{}",
                    gv.replace('~', "~0").replace('/', "~1")
                ))
                .and_then(|p| p.get("serverRelativeURL"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let get = &get;
            async move {
                match url {
                    Some(url) => get(url).await,
                    None => Err(backend(
                        "read the OpenAPI v3 index",
                        format!("the server does not describe `{gv}`"),
                    )),
                }
            }
        });
        futures_util::future::try_join_all(docs).await
    }

    /// GET one object; `None` when it does not exist.
    ///
    /// # Errors
    /// [`Error::Backend`] for any failure but 404.
    pub async fn get(&self, id: &ResourceId) -> Result<Option<Value>, Error> {
        let step = format!("get {id}");
        let (r, name) = self.request_for(id)?;
        let req = r
            .get(&name, &GetParams::default())
            .map_err(|e| backend(&step, e))?;
        match self.send(&step, req).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(failed(step, e)),
        }
    }

    /// Server-side apply `obj` as field manager `labctl`: `force` takes ownership of conflicting
    /// fields, `dry_run` asks the server what the result would be without storing it.
    ///
    /// # Errors
    /// [`Error::Backend`] with the server's reason; for a conflict, each field and its manager.
    pub async fn apply(
        &self,
        id: &ResourceId,
        obj: &Value,
        force: bool,
        dry_run: bool,
    ) -> Result<Value, Error> {
        let step = format!("{} {id}", if dry_run { "dry-run apply" } else { "apply" });
        let (r, name) = self.request_for(id)?;
        let mut pp = PatchParams::apply(FIELD_MANAGER);
        pp.force = force;
        pp.dry_run = dry_run;
        let req = r
            .patch(&name, &pp, &Patch::Apply(obj))
            .map_err(|e| backend(&step, e))?;
        self.send(&step, req).await.map_err(|e| failed(step, e))
    }

    /// DELETE one object (background propagation, as kubectl); absent already is fine.
    ///
    /// # Errors
    /// [`Error::Backend`] with the server's reason.
    pub async fn delete(&self, id: &ResourceId) -> Result<(), Error> {
        let step = format!("delete {id}");
        let (r, name) = self.request_for(id)?;
        let req = r
            .delete(&name, &DeleteParams::background())
            .map_err(|e| backend(&step, e))?;
        match self.send(&step, req).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(failed(step, e)),
        }
    }

    /// Poll until an object is gone (a delete with finalizers takes time), at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Backend`] when it is still there after `timeout`.
    pub async fn wait_gone(&self, id: &ResourceId, timeout: Duration) -> Result<(), Error> {
        let until = Instant::now() + timeout;
        loop {
            if self.get(id).await?.is_none() {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(backend(
                    format!("replace {id}"),
                    format!("still being deleted after {} s", timeout.as_secs()),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl DryRun for Kube {
    fn dry_run<'a>(
        &'a self,
        id: &'a ResourceId,
        obj: &'a Value,
        force: bool,
    ) -> futures_util::future::BoxFuture<'a, Result<Value, DryRunError>> {
        Box::pin(async move {
            let step = format!("dry-run apply {id}");
            let (r, name) = self
                .request_for(id)
                .map_err(|e| DryRunError::Unchecked(e.report()))?;
            let mut pp = PatchParams::apply(FIELD_MANAGER);
            pp.force = force;
            pp.dry_run = true;
            let req = r
                .patch(&name, &pp, &Patch::Apply(obj))
                .map_err(|e| DryRunError::Unchecked(backend(&step, e).report()))?;
            match self.send(&step, req).await {
                Ok(v) => Ok(v),
                Err(e) => match api_status(&e) {
                    Some(status) => Err(DryRunError::Refused(status)),
                    None => Err(DryRunError::Unchecked(backend(&step, e).report())),
                },
            }
        })
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

// The apply lock's Leases (`coordination.k8s.io/v1`), for `crate::lock`: raw requests on a fixed
// path, so that they work before discovery knows the group and whatever the stack renders.

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn leases(namespace: &str) -> Request {
    Request::new(format!(
        "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    ))
}

impl Kube {
    /// Whether a namespace exists.
    ///
    /// # Errors
    /// [`Error::Backend`] for any failure but 404.
    pub async fn namespace_exists(&self, name: &str) -> Result<bool, Error> {
        let step = format!("get Namespace {name}");
        let req = Request::new("/api/v1/namespaces")
            .get(name, &GetParams::default())
            .map_err(|e| backend(&step, e))?;
        match self.send(&step, req).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(failed(step, e)),
        }
    }

    /// GET a Lease; `None` when there is none.
    ///
    /// # Errors
    /// [`Error::Backend`] for any failure but 404.
    pub async fn get_lease(&self, namespace: &str, name: &str) -> Result<Option<Value>, Error> {
        let step = format!("get Lease {namespace}/{name}");
        let req = leases(namespace)
            .get(name, &GetParams::default())
            .map_err(|e| backend(&step, e))?;
        match self.send(&step, req).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(failed(step, e)),
        }
    }

    /// Create a Lease (POST), or `replace` it (PUT, guarded by the `metadata.resourceVersion` it
    /// carries). `None` when another writer got there first (409: it exists already, or moved
    /// since it was read).
    ///
    /// # Errors
    /// [`Error::Backend`] with the server's reason for any other failure.
    pub async fn write_lease(
        &self,
        namespace: &str,
        lease: &Value,
        replace: bool,
    ) -> Result<Option<Value>, Error> {
        let name = lease
            .at("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let step = format!(
            "{} Lease {namespace}/{name}",
            if replace { "update" } else { "create" }
        );
        let body = serde_json::to_vec(lease).map_err(|e| backend(&step, e))?;
        let pp = kube::api::PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let r = leases(namespace);
        let req = if replace {
            r.replace(name, &pp, body)
        } else {
            r.create(&pp, body)
        }
        .map_err(|e| backend(&step, e))?;
        match self.send(&step, req).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_conflict(&e) => Ok(None),
            Err(e) => Err(failed(step, e)),
        }
    }

    /// DELETE a Lease; absent already is fine.
    ///
    /// # Errors
    /// [`Error::Backend`] with the server's reason.
    pub async fn delete_lease(&self, namespace: &str, name: &str) -> Result<(), Error> {
        let step = format!("delete Lease {namespace}/{name}");
        let req = leases(namespace)
            .delete(name, &DeleteParams::default())
            .map_err(|e| backend(&step, e))?;
        match self.send(&step, req).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(failed(step, e)),
        }
    }
}
