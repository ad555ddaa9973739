//! An OTLP receiver the tests own, standing in for a collector: gRPC (tonic with
//! `opentelemetry-proto`'s generated collector services) and HTTP/protobuf (`POST /v1/traces`,
//! `/v1/metrics`, `/v1/logs`), both on loopback ports chosen by the system.
//!
//! ```ignore
//! let rx = otlp::Receiver::start();
//! stack.labctl(&["apply", "--yes"])
//!     .env("OTEL_EXPORTER_OTLP_ENDPOINT", rx.http_endpoint()) // or rx.grpc_endpoint() + protocol grpc
//!     .run();
//! let spans = rx.wait_for_spans(Duration::from_secs(10), |s| s.iter().any(|s| s.name == "labctl apply"));
//! let root = spans.iter().find(|s| s.name == "labctl apply").unwrap();
//! assert_eq!(root.attr("labctl.stack"), Some("lab"));
//! let children = otlp::children(&spans, root);
//! ```
//!
//! Everything that arrives is flattened into [`Span`], [`Metric`] and [`Log`] (attribute values
//! as strings) and also kept as the decoded requests' debug text ([`Receiver::raw`]), for checks
//! such as "this secret appears nowhere". [`Receiver::set_reply`] makes it answer with an error or
//! not at all, to test a failing collector.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
    logs_service_server::{LogsService, LogsServiceServer},
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_server::{MetricsService, MetricsServiceServer},
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Take the data (the default).
    Accept,
    /// Refuse with this HTTP status (gRPC: `UNAVAILABLE` for 5xx, `INVALID_ARGUMENT` for 4xx);
    /// nothing is stored.
    Status(u16),
    /// Never answer (a hung collector); nothing is stored.
    Hang,
}

/// One received span.
#[derive(Debug, Clone)]
pub struct Span {
    /// Its name.
    pub name: String,
    /// Trace id, lowercase hex.
    pub trace_id: String,
    /// Span id, lowercase hex.
    pub span_id: String,
    /// Parent span id, lowercase hex; empty for a root.
    pub parent_span_id: String,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
    /// Its events: name and attributes.
    #[expect(
        dead_code,
        reason = "no test reads them yet; failure messages show them"
    )]
    pub events: Vec<(String, BTreeMap<String, String>)>,
    /// The resource of the batch it came in.
    pub resource: BTreeMap<String, String>,
    /// `"grpc"` or `"http"`: how it arrived.
    pub via: &'static str,
}

impl Span {
    /// An attribute's value.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// One received metric (all its data points).
#[derive(Debug, Clone)]
pub struct Metric {
    /// Its name.
    pub name: String,
    /// Its unit.
    pub unit: String,
    /// Its description.
    pub description: String,
    /// `gauge`, `sum`, `histogram`, ….
    pub kind: &'static str,
    /// For a sum: whether it is monotonic.
    pub monotonic: bool,
    /// Each data point: attributes and value (histograms: the sum).
    pub points: Vec<(BTreeMap<String, String>, f64)>,
    /// The resource of the batch it came in.
    pub resource: BTreeMap<String, String>,
    /// `"grpc"` or `"http"`.
    pub via: &'static str,
}

/// One received log record.
#[derive(Debug, Clone)]
#[expect(
    dead_code,
    reason = "no test reads a record's attributes, trace id or transport yet; failure messages show them"
)]
pub struct Log {
    /// The body, as text.
    pub body: String,
    /// Severity text (`INFO`, `WARN`, …) or number when no text came.
    pub severity: String,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
    /// Trace id (hex) when logged inside a span, else empty.
    pub trace_id: String,
    /// The resource of the batch it came in.
    pub resource: BTreeMap<String, String>,
    /// `"grpc"` or `"http"`.
    pub via: &'static str,
}

#[derive(Default)]
struct Store {
    spans: Vec<Span>,
    metrics: Vec<Metric>,
    logs: Vec<Log>,
    raw: String,
    requests: usize,
}

struct Shared {
    store: Mutex<Store>,
    reply: Mutex<Reply>,
}

/// The receiver: both servers run on a runtime of their own until it is dropped.
pub struct Receiver {
    shared: Arc<Shared>,
    grpc: SocketAddr,
    http: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

impl Receiver {
    /// Start both servers on `127.0.0.1`, ports chosen by the system.
    pub fn start() -> Receiver {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("receiver runtime");
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            reply: Mutex::new(Reply::Accept),
        });
        let (grpc, http) = rt.block_on(async {
            let g = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let h = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            (g, h)
        });
        let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let svc = Grpc(shared.clone());
        rt.spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(svc.clone()))
                .add_service(MetricsServiceServer::new(svc.clone()))
                .add_service(LogsServiceServer::new(svc))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc))
                .await;
        });
        let app = {
            use axum::routing::post;
            let (t, m, l) = (shared.clone(), shared.clone(), shared.clone());
            axum::Router::new()
                .route(
                    "/v1/traces",
                    post(move |b: axum::body::Bytes| http_export(t, b, Signal::Traces)),
                )
                .route(
                    "/v1/metrics",
                    post(move |b: axum::body::Bytes| http_export(m, b, Signal::Metrics)),
                )
                .route(
                    "/v1/logs",
                    post(move |b: axum::body::Bytes| http_export(l, b, Signal::Logs)),
                )
        };
        rt.spawn(async move {
            let _ = axum::serve(http, app).await;
        });
        Receiver {
            shared,
            grpc: grpc_addr,
            http: http_addr,
            _rt: rt,
        }
    }

    /// The gRPC endpoint, as `http://127.0.0.1:PORT` (use with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`).
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// The HTTP endpoint's base, as `http://127.0.0.1:PORT` (the `/v1/<signal>` paths follow it).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Answer every later request this way.
    pub fn set_reply(&self, reply: Reply) {
        *self.shared.reply.lock().unwrap() = reply;
    }

    /// Export requests received (answered or not), over both protocols.
    pub fn requests(&self) -> usize {
        self.shared.store.lock().unwrap().requests
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.shared.store.lock().unwrap().spans.clone()
    }

    /// The metrics received so far (one entry per metric per export).
    pub fn metrics(&self) -> Vec<Metric> {
        self.shared.store.lock().unwrap().metrics.clone()
    }

    /// The log records received so far.
    pub fn logs(&self) -> Vec<Log> {
        self.shared.store.lock().unwrap().logs.clone()
    }

    /// Every accepted request, decoded, as debug text: to check that something appears nowhere.
    pub fn raw(&self) -> String {
        self.shared.store.lock().unwrap().raw.clone()
    }

    /// Wait until `done` holds for the spans received, at most `timeout`; the spans. Panics with
    /// what did arrive when it does not.
    pub fn wait_for_spans(&self, timeout: Duration, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        wait(timeout, || self.spans(), |s| done(s), "spans")
    }

    /// As [`Receiver::wait_for_spans`], for metrics.
    pub fn wait_for_metrics(
        &self,
        timeout: Duration,
        done: impl Fn(&[Metric]) -> bool,
    ) -> Vec<Metric> {
        wait(timeout, || self.metrics(), |m| done(m), "metrics")
    }

    /// As [`Receiver::wait_for_spans`], for log records.
    pub fn wait_for_logs(&self, timeout: Duration, done: impl Fn(&[Log]) -> bool) -> Vec<Log> {
        wait(timeout, || self.logs(), |l| done(l), "logs")
    }
}

/// The spans of `spans` whose parent is `parent`.
pub fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.trace_id == parent.trace_id && s.parent_span_id == parent.span_id)
        .collect()
}

fn wait<T: std::fmt::Debug>(
    timeout: Duration,
    get: impl Fn() -> Vec<T>,
    done: impl Fn(&[T]) -> bool,
    what: &str,
) -> Vec<T> {
    let until = Instant::now() + timeout;
    loop {
        let got = get();
        if done(&got) {
            return got;
        }
        if Instant::now() > until {
            panic!("the {what} awaited did not arrive within {timeout:?}; got: {got:#?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Clone, Copy)]
enum Signal {
    Traces,
    Metrics,
    Logs,
}

async fn http_export(
    shared: Arc<Shared>,
    body: axum::body::Bytes,
    signal: Signal,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    shared.store.lock().unwrap().requests += 1;
    let reply = *shared.reply.lock().unwrap();
    match reply {
        Reply::Accept => {}
        Reply::Status(code) => {
            return StatusCode::from_u16(code)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response();
        }
        Reply::Hang => std::future::pending::<()>().await,
    }
    let decoded = match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(body)
            .map(|r| take_traces(&shared, r, "http"))
            .map(|()| ExportTraceServiceResponse::default().encode_to_vec()),
        Signal::Metrics => ExportMetricsServiceRequest::decode(body)
            .map(|r| take_metrics(&shared, r, "http"))
            .map(|()| ExportMetricsServiceResponse::default().encode_to_vec()),
        Signal::Logs => ExportLogsServiceRequest::decode(body)
            .map(|r| take_logs(&shared, r, "http"))
            .map(|()| ExportLogsServiceResponse::default().encode_to_vec()),
    };
    match decoded {
        Ok(reply) => ([(header::CONTENT_TYPE, "application/x-protobuf")], reply).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("not an OTLP protobuf body: {e}"),
        )
            .into_response(),
    }
}

#[derive(Clone)]
struct Grpc(Arc<Shared>);

impl Grpc {
    async fn gate(&self) -> Result<(), tonic::Status> {
        self.0.store.lock().unwrap().requests += 1;
        let reply = *self.0.reply.lock().unwrap();
        match reply {
            Reply::Accept => Ok(()),
            Reply::Status(c) if c >= 500 => Err(tonic::Status::unavailable(format!("status {c}"))),
            Reply::Status(c) => Err(tonic::Status::invalid_argument(format!("status {c}"))),
            Reply::Hang => std::future::pending().await,
        }
    }
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.gate().await?;
        take_traces(&self.0, request.into_inner(), "grpc");
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.gate().await?;
        take_metrics(&self.0, request.into_inner(), "grpc");
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.gate().await?;
        take_logs(&self.0, request.into_inner(), "grpc");
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn value(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attrs(kv: &[KeyValue]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|kv| (kv.key.clone(), value(&kv.value)))
        .collect()
}

fn resource(r: &Option<Resource>) -> BTreeMap<String, String> {
    r.as_ref().map(|r| attrs(&r.attributes)).unwrap_or_default()
}

fn take_traces(shared: &Shared, r: ExportTraceServiceRequest, via: &'static str) {
    let mut store = shared.store.lock().unwrap();
    store.raw.push_str(&format!("{r:?}\n"));
    for rs in r.resource_spans {
        let res = resource(&rs.resource);
        for ss in rs.scope_spans {
            for s in ss.spans {
                store.spans.push(Span {
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    attributes: attrs(&s.attributes),
                    events: s
                        .events
                        .iter()
                        .map(|e| (e.name.clone(), attrs(&e.attributes)))
                        .collect(),
                    resource: res.clone(),
                    via,
                });
            }
        }
    }
}

fn take_metrics(shared: &Shared, r: ExportMetricsServiceRequest, via: &'static str) {
    let mut store = shared.store.lock().unwrap();
    store.raw.push_str(&format!("{r:?}\n"));
    let number = |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| {
        let v = match p.value {
            Some(number_data_point::Value::AsDouble(d)) => d,
            Some(number_data_point::Value::AsInt(i)) => i as f64,
            None => f64::NAN,
        };
        (attrs(&p.attributes), v)
    };
    for rm in r.resource_metrics {
        let res = resource(&rm.resource);
        for sm in rm.scope_metrics {
            for m in sm.metrics {
                let (kind, monotonic, points) = match &m.data {
                    Some(metric::Data::Gauge(g)) => {
                        ("gauge", false, g.data_points.iter().map(number).collect())
                    }
                    Some(metric::Data::Sum(s)) => (
                        "sum",
                        s.is_monotonic,
                        s.data_points.iter().map(number).collect(),
                    ),
                    Some(metric::Data::Histogram(h)) => (
                        "histogram",
                        false,
                        h.data_points
                            .iter()
                            .map(|p| (attrs(&p.attributes), p.sum.unwrap_or(f64::NAN)))
                            .collect(),
                    ),
                    Some(_) => ("other", false, Vec::new()),
                    None => ("none", false, Vec::new()),
                };
                store.metrics.push(Metric {
                    name: m.name,
                    unit: m.unit,
                    description: m.description,
                    kind,
                    monotonic,
                    points,
                    resource: res.clone(),
                    via,
                });
            }
        }
    }
}

fn take_logs(shared: &Shared, r: ExportLogsServiceRequest, via: &'static str) {
    let mut store = shared.store.lock().unwrap();
    store.raw.push_str(&format!("{r:?}\n"));
    for rl in r.resource_logs {
        let res = resource(&rl.resource);
        for sl in rl.scope_logs {
            for l in sl.log_records {
                store.logs.push(Log {
                    body: value(&l.body),
                    severity: if l.severity_text.is_empty() {
                        l.severity_number.to_string()
                    } else {
                        l.severity_text.clone()
                    },
                    attributes: attrs(&l.attributes),
                    trace_id: hex(&l.trace_id),
                    resource: res.clone(),
                    via,
                });
            }
        }
    }
}
