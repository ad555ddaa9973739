//! `--listen`: the latest collection as Prometheus text on `GET /metrics`, named as
//! OpenTelemetry's Prometheus exporters name OTLP metrics (dots to underscores, the unit as a
//! suffix, `_total` on counters, resource attributes on `target_info`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::agent::runtime::Shutdown;
use crate::metric::{Kind, Point};

/// What the endpoint serves: the resource attributes and the points of the last collection.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Resource attributes, as `("host.name", "node1")`.
    pub resource: Vec<(&'static str, String)>,
    /// The last collection.
    pub points: Vec<Point>,
}

/// Shared between the collection loop (writer) and the endpoint (readers).
pub type Latest = Arc<RwLock<Arc<Snapshot>>>;

/// Serve `latest` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, latest: Latest, shutdown: Shutdown) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("metrics endpoint: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let latest = latest.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let latest = latest.clone();
                async move { Ok::<_, Infallible>(answer(&req, &latest)) }
            });
            // A client that goes away mid-answer is its own business.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer<B>(req: &Request<B>, latest: &Latest) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, ctype: &str, body: String| {
        Response::builder()
            .status(status)
            .header(hyper::header::CONTENT_TYPE, ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts")
    };
    let plain = "text/plain; charset=utf-8";
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let snap = latest.read().expect("not poisoned").clone();
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                render(&snap),
            )
        }
        (_, "/metrics") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            plain,
            "use GET /metrics\n".into(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            plain,
            "not found: this endpoint serves GET /metrics\n".into(),
        ),
    }
}

/// The Prometheus name of an OpenTelemetry metric.
pub fn metric_name(p: &Point) -> String {
    let mut name = sanitize(p.name);
    let suffix = match p.unit {
        "s" => "seconds",
        "By" => "bytes",
        "1" if p.kind == Kind::Gauge => "ratio",
        _ => "",
    };
    if !suffix.is_empty() && !name.ends_with(suffix) {
        name.push('_');
        name.push_str(suffix);
    }
    if p.kind == Kind::Counter {
        name.push_str("_total");
    }
    name
}

/// Prometheus text exposition format 0.0.4: one `# HELP`/`# TYPE` per family, then its series.
pub fn render(snap: &Snapshot) -> String {
    let mut families: BTreeMap<String, Vec<&Point>> = BTreeMap::new();
    for p in &snap.points {
        families.entry(metric_name(p)).or_default().push(p);
    }
    let mut out = String::new();
    if !snap.resource.is_empty() {
        out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info");
        labels(&mut out, &snap.resource);
        out.push_str(" 1\n");
    }
    for (name, points) in &families {
        let first = points[0];
        let kind = match first.kind {
            Kind::Counter => "counter",
            Kind::Gauge | Kind::UpDownCounter => "gauge",
        };
        let _ = writeln!(out, "# HELP {name} {}", escape_help(first.description));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for p in points {
            out.push_str(name);
            labels(&mut out, &p.attributes);
            let _ = writeln!(out, " {}", value(p.value));
        }
    }
    out
}

fn labels(out: &mut String, attrs: &[(&'static str, String)]) {
    if attrs.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}=\"{}\"", sanitize(k), escape_value(v));
    }
    out.push('}');
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn escape_value(s: &str) -> String {
    s.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn escape_help(s: &str) -> String {
    s.replace('\\', r"\\").replace('\n', r"\n")
}

fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}
