//! A faithful, in-process stand-in for the Kubernetes API server, for labctl's tests and
//! benchmarks (no real kube-apiserver can run where they run).
//!
//! It serves plain HTTP on `127.0.0.1` (an ephemeral port) and answers as a real
//! kube-apiserver 1.36 does for everything labctl and `kubectl` use. Its fidelity is held to
//! exchanges recorded from a real 1.36.2 server (`tests/transcripts/`, replayed by
//! `tests/it/transcripts.rs`) and to the real `kubectl` (`tests/it/kubectl.rs`):
//!
//! - discovery: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>[/<version>]`, legacy and
//!   aggregated (`apidiscovery.k8s.io/v2`, when the client's `Accept` asks for it), in the real
//!   server's group and resource order, with `storageVersionHash`;
//! - OpenAPI v3: the `/openapi/v3` index (served as `text/plain`, as the real server does) and
//!   per group-version documents whose schemas carry `x-kubernetes-list-type`,
//!   `x-kubernetes-list-map-keys` and `x-kubernetes-map-type` as recorded from the real server
//!   (`src/list_semantics.rs`, generated from `tests/transcripts/13-list-semantics.json`);
//! - GET / LIST (namespaced, cluster-scoped, all namespaces) with `labelSelector` (`=`, `==`,
//!   `!=`, `in`, `notin`, `key`, `!key`), `fieldSelector` and `limit`/`continue` paging;
//!   `watch=true` streams events;
//! - server-side apply (`PATCH` with `application/apply-patch+yaml`) with per-manager
//!   `managedFields` in the real `FieldsV1` format, merged by the recorded list and map types
//!   (keyed lists such as Service ports by `port`+`protocol`, sets, atomic lists, atomic maps
//!   and structs as leaves), removal of fields a manager stopped applying, `409 Conflict` with
//!   `FieldManagerConflict` causes unless `force=true` (a manager left owning nothing is
//!   dropped), shared ownership, `dryRun=All`; a write that would only change managedFields
//!   times is no write;
//! - `POST`, `PUT`, merge / strategic-merge / JSON patches (recorded as `Update` operations),
//!   the `status` subresource, `DELETE` (objects, collections, namespaces with their contents);
//! - `resourceVersion` (one global counter, bumped only by real changes) and `generation`
//!   (bumped only when `spec` changes), defaulting such as Service `clusterIP` allocation, the
//!   real 422 rejections (duplicate Service port names, immutable fields, ...);
//! - validating admission after validation (dry runs included): ResourceQuota (enforced once
//!   its `status.hard` is set, as the quota controller does) and refusals registered by tests;
//! - authentication and RBAC: a `TokenRequest` issues a token for a ServiceAccount, whose
//!   requests are authorized by the stored Roles/ClusterRoles and bindings with the real
//!   authorizer's 403s; requests without a token (or with the kubeconfig's) act as the admin.
//!
//! On start it writes a kubeconfig (server `http://127.0.0.1:PORT`, a dummy bearer token) that
//! `kubectl --kubeconfig` and kube-rs both accept.
//!
//! # Use from synchronous tests
//!
//! ```no_run
//! use labctl_testapi::{Options, TestApiServer};
//! use serde_json::json;
//!
//! let srv = TestApiServer::start_blocking(Options::default()).unwrap();
//! // run `labctl --kubeconfig <srv.kubeconfig_path()> ...` here
//! srv.apply_as("other-tool", json!({
//!     "apiVersion": "v1", "kind": "ConfigMap",
//!     "metadata": {"name": "c", "namespace": "default"},
//!     "data": {"owned": "by other-tool"},
//! })).unwrap();
//! assert!(srv.get("v1", "ConfigMap", "default", "c").is_some());
//! println!("{} requests", srv.requests());
//! ```
//!
//! Set `LABCTL_TESTAPI_LOG=1` to have every request and its status printed to stderr.
//!
//! # Use from async code
//!
//! `TestApiServer::start(opts).await` serves on the caller's tokio runtime instead; the hook
//! methods are the same (they are synchronous and short). The server then only answers while
//! that runtime runs: do not block a current-thread runtime on a child process that talks to
//! it (use `start_blocking` for that).

//! # Hooks for tests
//!
//! [`TestApiServer`] methods act on the server directly (from any thread): act as another field
//! manager ([`apply_as`](TestApiServer::apply_as), [`apply_with`](TestApiServer::apply_with),
//! [`update_as`](TestApiServer::update_as)), act as a controller
//! ([`set_status`](TestApiServer::set_status),
//! [`complete_rollout`](TestApiServer::complete_rollout), or
//! [`Options::auto_rollout`]), read and write objects ([`get`](TestApiServer::get),
//! [`list`](TestApiServer::list), [`objects`](TestApiServer::objects),
//! [`put`](TestApiServer::put), [`delete`](TestApiServer::delete)), count requests
//! ([`requests`](TestApiServer::requests), [`requests_to`](TestApiServer::requests_to),
//! [`request_counts`](TestApiServer::request_counts),
//! [`request_log`](TestApiServer::request_log),
//! [`reset_requests`](TestApiServer::reset_requests)), slow every request down
//! ([`set_latency`](TestApiServer::set_latency)) and inject failures
//! ([`inject_error`](TestApiServer::inject_error)), refuse writes of one object as an
//! admission webhook would ([`refuse`](TestApiServer::refuse),
//! [`refuse_in`](TestApiServer::refuse_in), [`clear_refusals`](TestApiServer::clear_refusals)),
//! and make an account limited to some namespaces
//! ([`namespaced_token`](TestApiServer::namespaced_token),
//! [`kubeconfig_for_token`](TestApiServer::kubeconfig_for_token)).
//!
//! # Where it differs from the real server
//!
//! - Merge types of core/v1, apps/v1 and meta/v1 types come from the recorded table; other
//!   kinds (RBAC, networking, custom resources) use rules by field name: associative
//!   `containers`, `volumes`, `env`, ports, status `conditions` (`type`), ...; selectors,
//!   `roleRef` and key refs atomic; every other list atomic. OpenAPI documents carry the
//!   recorded extensions and the declared fields, not value types, descriptions or
//!   defaults; custom resources get a permissive schema.
//! - JSON bodies print object keys in the server's own order, not always Go's struct order.
//! - `/version` still reports 1.32 (kubectl 1.32 warns about a larger skew).
//! - Validation covers names, labels, workload selectors/templates/containers, Service ports,
//!   cluster IP / node port clashes and the immutable fields of Deployments, StatefulSets,
//!   DaemonSets, Services, PVCs, immutable ConfigMaps/Secrets, Secret `type` and bindings'
//!   `roleRef`. Fields a built-in type does not declare (a table generated from k8s-openapi's
//!   1.33 types by `tools/gen_schema.py`) fail a server-side apply with `field not declared
//!   in schema`, and other writes with `fieldValidation=Strict` with `strict decoding error`;
//!   value types, enums and custom resources' schemas are not checked.
//! - Defaulting covers what a diff would notice: Service type/IPs/ports/policies, workload
//!   strategies, replicas, history limits, pod template and container defaults, PVC volume mode,
//!   storage class and protection finalizer, Namespace label/finalizer/phase, Secret `type`
//!   and `stringData`, CRD names and `Established` status. Other kinds are stored as sent.
//! - Strategic merge patch is a JSON merge patch that merges associative lists by key
//!   (no `$patch` directives); JSON patch supports add, remove, replace and test.
//! - No controllers beyond the optional rollout simulation and namespace finalization: no
//!   ReplicaSets or Pods are created, `propagationPolicy` is accepted but nothing is
//!   garbage-collected, finalizers other than a Namespace's do not delay deletion.
//! - Watches send no bookmarks, replay at most the last 2048 events and never answer 410 Gone;
//!   an object leaving a label selector sends no `DELETED`.
//! - JSON and YAML only: protobuf or CBOR request bodies get 415 (so kubectl's typed
//!   generators such as `kubectl create secret ...` fail; `kubectl create -f`, `apply`,
//!   `patch`, `label`, `scale`, `delete` use JSON and work). No real admission webhooks or
//!   authentication plugins (tokens only; no client certificates, groups or impersonation);
//!   one version per group (no conversion). `Table` output for `kubectl get` has a few columns per
//!   kind.

#![warn(missing_docs)]

pub mod access;
mod admission;
mod defaults;
pub mod fieldset;
mod http;
pub mod list_semantics;
pub mod resources;
pub mod schema;
mod schema_fields;
pub mod selector;
pub mod status;
pub mod store;
mod util;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use serde_json::{Value, json};

pub use access::Identity;
pub use admission::Refusal;
pub use status::ApiError;
use store::{State, WriteParams};

/// Start-up options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Latency injected before every request is handled (changeable later with
    /// [`TestApiServer::set_latency`]).
    pub latency: Duration,
    /// When set, Deployments, StatefulSets and DaemonSets report a completed rollout right after
    /// every write (as if their controller ran instantly; see
    /// [`TestApiServer::complete_rollout`]).
    pub auto_rollout: bool,
    /// Where to write the kubeconfig; a temporary directory (removed on drop) when `None`.
    pub kubeconfig_path: Option<PathBuf>,
    /// Port to bind on 127.0.0.1; 0 (the default) picks a free one.
    pub port: u16,
    /// Create the namespaces every cluster has (`default`, `kube-system`, `kube-public`,
    /// `kube-node-lease`). Default: true.
    pub cluster_defaults: bool,
    /// Storage class defaulted onto new PVCs that name none (k3s: `local-path`); `None` to
    /// leave them without one.
    pub default_storage_class: Option<String>,
    /// Nodes counted by DaemonSet status in auto-rollout mode. Default: 1.
    pub nodes: u64,
    /// How long a deleted Namespace stays `Terminating` before it and everything in it are
    /// removed (the real namespace controller takes seconds). Default: 100 ms.
    pub namespace_finalize_delay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            latency: Duration::ZERO,
            auto_rollout: false,
            kubeconfig_path: None,
            port: 0,
            cluster_defaults: true,
            default_storage_class: Some("local-path".into()),
            nodes: 1,
            namespace_finalize_delay: Duration::from_millis(100),
        }
    }
}

/// Errors starting the server.
#[derive(Debug)]
pub enum StartError {
    /// Binding or writing the kubeconfig failed.
    Io(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Io(e) => write!(f, "cannot start the test API server: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Io(e) => Some(e),
        }
    }
}

impl From<std::io::Error> for StartError {
    fn from(e: std::io::Error) -> Self {
        StartError::Io(e)
    }
}

/// A running test API server. Dropping it stops the server.
#[derive(Debug)]
pub struct TestApiServer {
    shared: Arc<Mutex<State>>,
    addr: SocketAddr,
    kubeconfig: PathBuf,
    _tempdir: Option<tempfile::TempDir>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ u64::from(std::process::id()).rotate_left(32)
}

fn new_state(opts: &Options) -> State {
    let mut st = State::new(seed());
    st.latency = opts.latency;
    st.nodes = opts.nodes;
    st.namespace_finalize_delay = opts.namespace_finalize_delay;
    st.default_storage_class = opts.default_storage_class.clone();
    if opts.cluster_defaults {
        let def = st
            .def_by_kind("v1", "Namespace")
            .expect("Namespace is built in");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            st.update(
                &def,
                "",
                ns,
                obj,
                "kube-apiserver",
                &WriteParams::default(),
                true,
            )
            .expect("creating a built-in namespace");
        }
        // The ConfigMaps the real kube-apiserver writes into kube-system at start (an
        // all-namespaces LIST returns them).
        let cm = st
            .def_by_kind("v1", "ConfigMap")
            .expect("ConfigMap is built in");
        let since = util::now_rfc3339();
        for (name, data) in [
            (
                "extension-apiserver-authentication",
                json!({"requestheader-allowed-names": "[]",
                       "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]",
                       "requestheader-group-headers": "[\"X-Remote-Group\"]",
                       "requestheader-username-headers": "[\"X-Remote-User\"]"}),
            ),
            (
                "kube-apiserver-legacy-service-account-token-tracking",
                json!({"since": since[..10]}),
            ),
        ] {
            let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": name, "namespace": "kube-system"}, "data": data});
            st.update(
                &cm,
                "kube-system",
                name,
                obj,
                "kube-apiserver",
                &WriteParams::default(),
                true,
            )
            .expect("creating a kube-system ConfigMap");
        }
    }
    st.auto_rollout = opts.auto_rollout;
    st
}

fn router(shared: Arc<Mutex<State>>) -> Router {
    let log = std::env::var_os("LABCTL_TESTAPI_LOG").is_some_and(|v| !v.is_empty() && v != "0");
    Router::new()
        .fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let shared = shared.clone();
                async move {
                    let line = log.then(|| format!("{method} {uri}"));
                    let resp = http::handle(shared, method, uri, headers, body).await;
                    if let Some(line) = line {
                        eprintln!("labctl-testapi: {line} -> {}", resp.status().as_u16());
                    }
                    resp
                }
            },
        )
        // The real server's request body limit.
        .layer(axum::extract::DefaultBodyLimit::max(3 * 1024 * 1024))
}

/// The namespace controller: finalizes Terminating namespaces until the state is dropped.
async fn reaper(state: std::sync::Weak<Mutex<State>>) {
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Some(shared) = state.upgrade() else {
            return;
        };
        let mut st = shared.lock().unwrap_or_else(|e| e.into_inner());
        let delay = st.namespace_finalize_delay;
        st.reap(delay);
    }
}

fn kubeconfig_text(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: labctl-testapi
  cluster:
    server: http://{addr}
contexts:
- name: labctl-testapi
  context:
    cluster: labctl-testapi
    user: labctl-testapi
    namespace: default
current-context: labctl-testapi
users:
- name: labctl-testapi
  user:
    token: labctl-testapi-dummy-token
preferences: {{}}
"
    )
}

fn write_kubeconfig(
    opts: &Options,
    addr: SocketAddr,
) -> std::io::Result<(PathBuf, Option<tempfile::TempDir>)> {
    let (path, dir) = match &opts.kubeconfig_path {
        Some(p) => (p.clone(), None),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("labctl-testapi-")
                .tempdir()?;
            (dir.path().join("kubeconfig"), Some(dir))
        }
    };
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp-labctl-testapi");
    std::fs::write(&tmp, kubeconfig_text(addr))?;
    std::fs::rename(&tmp, &path)?;
    Ok((path, dir))
}

impl TestApiServer {
    /// Starts the server on the current tokio runtime.
    ///
    /// # Errors
    /// When the port cannot be bound or the kubeconfig cannot be written.
    pub async fn start(opts: Options) -> Result<TestApiServer, StartError> {
        let shared = Arc::new(Mutex::new(new_state(&opts)));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port)).await?;
        let addr = listener.local_addr()?;
        let (kubeconfig, tempdir) = write_kubeconfig(&opts, addr)?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(shared.clone());
        tokio::spawn(reaper(Arc::downgrade(&shared)));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(TestApiServer {
            shared,
            addr,
            kubeconfig,
            _tempdir: tempdir,
            shutdown: Some(tx),
            thread: None,
        })
    }

    /// Starts the server on a background thread with its own tokio runtime; for synchronous
    /// tests.
    ///
    /// # Errors
    /// When the port cannot be bound or the kubeconfig cannot be written.
    pub fn start_blocking(opts: Options) -> Result<TestApiServer, StartError> {
        let shared = Arc::new(Mutex::new(new_state(&opts)));
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", opts.port))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (kubeconfig, tempdir) = write_kubeconfig(&opts, addr)?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(shared.clone());
        let weak = Arc::downgrade(&shared);
        let thread = std::thread::Builder::new()
            .name("labctl-testapi".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(std_listener).expect("listener");
                    tokio::spawn(reaper(weak));
                    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                    let server = tokio::spawn(async move {
                        let _ = axum::serve(listener, app)
                            .with_graceful_shutdown(async move {
                                let _ = stop_rx.await;
                            })
                            .await;
                    });
                    let _ = rx.await;
                    let _ = stop_tx.send(());
                    // Open keep-alive or watch connections must not hold the drop up.
                    let _ = tokio::time::timeout(Duration::from_millis(300), server).await;
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(TestApiServer {
            shared,
            addr,
            kubeconfig,
            _tempdir: tempdir,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Path of the kubeconfig written at start.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Requests served since start or the last [`reset_requests`](Self::reset_requests).
    pub fn requests(&self) -> u64 {
        self.state().requests
    }

    /// Requests per `"METHOD /path"` (query excluded) since the last reset.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.state().per_route.clone()
    }

    /// Requests with this method and path (e.g. `("GET", "/api/v1/configmaps")`).
    pub fn requests_to(&self, method: &str, path: &str) -> u64 {
        self.state()
            .per_route
            .get(&format!("{method} {path}"))
            .copied()
            .unwrap_or(0)
    }

    /// Resets the request counters.
    pub fn reset_requests(&self) {
        let mut st = self.state();
        st.requests = 0;
        st.per_route.clear();
        st.log.clear();
    }

    /// Every request since start or the last reset, in order, as `METHOD /path?query`.
    pub fn request_log(&self) -> Vec<String> {
        self.state().log.clone()
    }

    /// Makes the next `times` requests whose method is `method` (or any, for `"*"`) and whose
    /// path starts with `path_prefix` fail with `error` (after the injected latency), e.g.
    /// `ApiError::internal("etcdserver: request timed out".into())`.
    pub fn inject_error(&self, method: &str, path_prefix: &str, error: ApiError, times: usize) {
        if times > 0 {
            self.state()
                .faults
                .push((method.to_string(), path_prefix.to_string(), error, times));
        }
    }

    /// Makes the next `times` requests matching `method` and `path_prefix` (as in
    /// [`inject_error`](Self::inject_error)) lose their connection halfway through the answer.
    pub fn inject_close(&self, method: &str, path_prefix: &str, times: usize) {
        self.inject_transport(method, path_prefix, store::TransportFault::Close, times);
    }

    /// Makes the next `times` matching requests wait `stall` before they are served, as a
    /// server that stopped answering does.
    pub fn inject_stall(&self, method: &str, path_prefix: &str, stall: Duration, times: usize) {
        self.inject_transport(
            method,
            path_prefix,
            store::TransportFault::Stall(stall),
            times,
        );
    }

    fn inject_transport(&self, method: &str, path: &str, f: store::TransportFault, times: usize) {
        if times > 0 {
            self.state()
                .transport_faults
                .push((method.to_string(), path.to_string(), f, times));
        }
    }

    /// Refuses writes of the object `kind`/`name` (in any namespace) with `error`, as a
    /// validating admission webhook would: create, update, patch and server-side apply,
    /// `dryRun=All` included, get `error` after the object was merged, defaulted and
    /// validated. Until [`clear_refusals`](Self::clear_refusals).
    pub fn refuse(&self, kind: &str, name: &str, error: ApiError) {
        self.state().refusals.push(Refusal {
            kind: kind.to_string(),
            name: name.to_string(),
            namespace: None,
            error,
        });
    }

    /// Like [`refuse`](Self::refuse), in one namespace only.
    pub fn refuse_in(&self, namespace: &str, kind: &str, name: &str, error: ApiError) {
        self.state().refusals.push(Refusal {
            kind: kind.to_string(),
            name: name.to_string(),
            namespace: Some(namespace.to_string()),
            error,
        });
    }

    /// Removes every refusal registered with [`refuse`](Self::refuse).
    pub fn clear_refusals(&self) {
        self.state().refusals.clear();
    }

    /// Registers an account limited to `namespaces` and returns its bearer token: it may do
    /// anything to namespaced resources in those namespaces; everything else (a
    /// cluster-wide LIST, a GET of a Namespace or of any cluster-scoped object) gets the real
    /// RBAC authorizer's 403 naming `user` (e.g. `system:serviceaccount:demo:limited`).
    /// Discovery and OpenAPI stay readable, as for any authenticated user.
    pub fn namespaced_token(&self, user: &str, namespaces: &[&str]) -> String {
        let mut st = self.state();
        let token = format!("testapi-limited-{}", st.tokens.len() + 1);
        st.tokens.insert(
            token.clone(),
            Identity::Namespaced {
                user: user.to_string(),
                namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            },
        );
        token
    }

    /// Writes a kubeconfig for this server that authenticates with `token` (from
    /// [`namespaced_token`](Self::namespaced_token) or a `TokenRequest`), with `namespace` as
    /// its default namespace, and returns its path (next to the server's own kubeconfig).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn kubeconfig_for_token(&self, token: &str, namespace: &str) -> std::io::Result<PathBuf> {
        let n = self.state().tokens.len();
        let path = self
            .kubeconfig
            .with_file_name(format!("kubeconfig-token-{n}-{namespace}"));
        let text = kubeconfig_text(self.addr)
            .replace(access::ADMIN_TOKEN, token)
            .replace("namespace: default", &format!("namespace: {namespace}"));
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Sets the latency injected before each request.
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// Switches auto-rollout mode (see [`Options::auto_rollout`]).
    pub fn set_auto_rollout(&self, on: bool) {
        self.state().auto_rollout = on;
    }

    /// Workloads whose pod template runs `image` never finish rolling out, even in auto-rollout
    /// mode: as an image that cannot be pulled, their new pods never become ready.
    pub fn set_stuck_image(&self, image: &str) {
        self.state().stuck_images.push(image.to_string());
    }

    /// The last issued resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state().rv
    }

    fn def(&self, api_version: &str, kind: &str) -> Result<resources::ResourceDef, ApiError> {
        self.state()
            .def_by_kind(api_version, kind)
            .ok_or_else(|| ApiError::bad_request(format!("unknown kind {api_version} {kind}")))
    }

    fn ident(obj: &Value) -> (String, String, String, String) {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        (
            s(&obj["apiVersion"]),
            s(&obj["kind"]),
            obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
            s(&obj["metadata"]["name"]),
        )
    }

    /// Server-side applies `obj` as field manager `manager` (no force), exactly as a client
    /// PATCH would. The namespace defaults to `default`.
    ///
    /// # Errors
    /// The API error the request would get (e.g. a 409 conflict).
    pub fn apply_as(&self, manager: &str, obj: Value) -> Result<Value, ApiError> {
        self.apply_with(manager, obj, false)
    }

    /// Server-side applies `obj` as `manager`, with `force` taking ownership on conflicts.
    ///
    /// # Errors
    /// The API error the request would get.
    pub fn apply_with(&self, manager: &str, obj: Value, force: bool) -> Result<Value, ApiError> {
        let (api, kind, ns, name) = Self::ident(&obj);
        let def = self.def(&api, &kind)?;
        let params = WriteParams {
            manager: Some(manager.into()),
            force,
            ..WriteParams::default()
        };
        self.state().apply(&def, &ns, &name, obj, &params)
    }

    /// Server-side applies every object of a multi-document YAML (or JSON) text as `manager`
    /// (`kind: List` documents are expanded; Namespaces and CRDs go first). Returns how many
    /// objects were applied.
    ///
    /// # Errors
    /// A 400 for unparsable YAML, or the first object's API error.
    pub fn apply_yaml(&self, manager: &str, text: &str) -> Result<usize, ApiError> {
        let docs: Vec<Value> = serde_saphyr::from_multiple(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        let mut objs: Vec<Value> = Vec::new();
        for d in docs {
            match d {
                Value::Null => {}
                Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
                    objs.extend(
                        m.get("items")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default(),
                    );
                }
                other => objs.push(other),
            }
        }
        let rank = |o: &Value| match o["kind"].as_str() {
            Some("Namespace") => 0,
            Some("CustomResourceDefinition") => 1,
            _ => 2,
        };
        objs.sort_by_key(rank);
        let n = objs.len();
        for o in objs {
            self.apply_as(manager, o)?;
        }
        Ok(n)
    }

    /// Replaces (or creates) `obj` as an `Update` operation by `manager`, as `kubectl
    /// replace`/`create` or a controller would.
    ///
    /// # Errors
    /// The API error the request would get.
    pub fn update_as(&self, manager: &str, obj: Value) -> Result<Value, ApiError> {
        let (api, kind, ns, name) = Self::ident(&obj);
        let def = self.def(&api, &kind)?;
        let mut st = self.state();
        let create = st.get(&def, &ns, &name).is_none();
        st.update(
            &def,
            &ns,
            &name,
            obj,
            manager,
            &WriteParams::default(),
            create,
        )
    }

    /// Sets the `status` of an object as a controller does (an `Update` on the `status`
    /// subresource by `kube-controller-manager`; bumps resourceVersion, not generation).
    /// Use `""` as the namespace of cluster-scoped objects.
    ///
    /// # Errors
    /// 404 when the object does not exist.
    pub fn set_status(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        status: Value,
    ) -> Result<Value, ApiError> {
        let def = self.def(api_version, kind)?;
        self.state()
            .set_status(&def, namespace, name, status, "kube-controller-manager")
    }

    /// Reports a workload (Deployment, StatefulSet, DaemonSet) as fully rolled out at its
    /// current generation and replica count, as its controller would: a Deployment gets its
    /// `deployment.kubernetes.io/revision` annotation, a StatefulSet its claims
    /// (`<template>-<set>-<ordinal>`, labelled with the template's labels and the selector).
    ///
    /// # Errors
    /// 404 when the object does not exist.
    pub fn complete_rollout(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let def = self.def(api_version, kind)?;
        self.state().complete_rollout(&def, namespace, name)
    }

    /// An object, if present. Use `""` as the namespace of cluster-scoped objects.
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let def = self.def(api_version, kind).ok()?;
        self.state().get(&def, namespace, name).cloned()
    }

    /// Stores an object directly (no managed fields, defaulting or validation; uid,
    /// creationTimestamp, generation filled in when absent; resourceVersion bumped). The
    /// namespace defaults to `default`.
    ///
    /// # Errors
    /// 400 for an unknown kind or a missing name.
    pub fn put(&self, obj: Value) -> Result<Value, ApiError> {
        self.state().put_raw(obj)
    }

    /// Deletes an object as a client DELETE would.
    ///
    /// # Errors
    /// 404 when absent.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let def = self.def(api_version, kind)?;
        self.state().delete(&def, namespace, name, false)
    }

    /// All stored objects.
    pub fn objects(&self) -> Vec<Value> {
        self.state().objects.values().cloned().collect()
    }

    /// Objects of one kind, optionally in one namespace.
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let Ok(def) = self.def(api_version, kind) else {
            return Vec::new();
        };
        let st = self.state();
        let list = st.list(&def, namespace, &Default::default(), &Default::default());
        list["items"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
