//! The proxy's HTTP side, the only importer of axum: routes, body and time limits, the connection
//! cap, and the server loop with a graceful stop. Handlers only translate between HTTP and the
//! plain [`Reply`]s of the other rooms.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

use super::{Proxy, Reply, agent_error, webhook};
use crate::agent::runtime::Shutdown;
use crate::error::Error;

/// How long requests in flight get to finish after the stop signal.
const GRACE: Duration = Duration::from_secs(10);

/// The limits a client is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body, in bytes.
    pub body: usize,
    /// Time to send the headers, and then the body.
    pub read_timeout: Duration,
    /// Connections served at once.
    pub connections: usize,
}

#[derive(Clone)]
struct App {
    proxy: Arc<Proxy>,
    limits: Limits,
}

fn router(app: App) -> Router {
    Router::new()
        .route("/hooks/github", post(github))
        .route(
            "/pipelines/{name}",
            post(pipeline_start).get(pipeline_status),
        )
        .route("/sync/status", get(sync_status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(app)
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = serde_json::to_vec(&self.body).unwrap_or_default();
        body.push(b'\n');
        let mut r = (status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == 401 {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

fn text<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn github(State(app): State<App>, req: Request) -> Reply {
    let event = text(req.headers(), "x-github-event").map(str::to_owned);
    let reply = delivery(app, req).await;
    super::metrics::delivery(event.as_deref(), reply.status);
    reply
}

async fn delivery(app: App, req: Request) -> Reply {
    let (parts, body) = req.into_parts();
    let limit = app.limits.body;
    // Refused on the announced length alone: nothing of an oversized body is read.
    let announced = text(&parts.headers, "content-length").and_then(|l| l.parse::<u64>().ok());
    if announced.is_some_and(|l| l > limit as u64) {
        return too_large(limit);
    }
    let read = tokio::time::timeout(app.limits.read_timeout, Limited::new(body, limit).collect());
    let bytes = match read.await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return too_large(limit),
        Ok(Err(e)) => return Reply::error(400, format!("cannot read the body: {e}")),
        Err(_) => return Reply::error(408, "the body took too long to arrive"),
    };
    let h = &parts.headers;
    let d = webhook::Delivery {
        signature: text(h, "x-hub-signature-256"),
        event: text(h, "x-github-event"),
        id: text(h, "x-github-delivery"),
        content_type: text(h, "content-type"),
    };
    webhook::handle(&app.proxy, d, &bytes).await
}

fn too_large(limit: usize) -> Reply {
    Reply::error(413, format!("the body is larger than {limit} bytes"))
}

async fn pipeline_start(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Reply {
    let reply = super::pipelines::start(&app.proxy, &name, text(&headers, "authorization")).await;
    super::metrics::pipeline_start(&name, reply.status);
    reply
}

async fn pipeline_status(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Reply {
    super::pipelines::status(&app.proxy, &name, text(&headers, "authorization")).await
}

async fn sync_status(State(app): State<App>) -> Reply {
    let status = serde_json::to_value(app.proxy.sync.status()).unwrap_or_default();
    Reply::json(200, status)
}

async fn healthz() -> Reply {
    Reply::json(200, serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(app): State<App>) -> Reply {
    let problems = app.proxy.readiness().await;
    if problems.is_empty() {
        Reply::json(200, serde_json::json!({ "status": "ready" }))
    } else {
        Reply::json(
            503,
            serde_json::json!({ "status": "not ready", "problems": problems }),
        )
    }
}

async fn not_found() -> Reply {
    Reply::error(404, "no such route")
}

/// Serve until `shutdown`, then stop accepting, let requests in flight finish (up to [`GRACE`])
/// and return.
///
/// # Errors
/// [`Error::Agent`] when accepting connections fails for good.
pub async fn serve(
    listener: tokio::net::TcpListener,
    proxy: Arc<Proxy>,
    limits: Limits,
    shutdown: Shutdown,
) -> Result<(), Error> {
    let app = router(App { proxy, limits });
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.map_err(|e| agent_error(e.to_string()))?,
            () = shutdown.cancelled() => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone().into_service::<hyper::body::Incoming>());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("stopped accepting; finishing requests in flight");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(GRACE) => {
            tracing::warn!("requests still in flight after {} s; stopping anyway", GRACE.as_secs());
        }
    }
    Ok(())
}
