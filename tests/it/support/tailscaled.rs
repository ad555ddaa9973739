//! A stand-in for tailscaled: its local API on a unix socket, speaking the daemon's real JSON.

use std::path::PathBuf;
use std::time::Duration;

/// tailscaled's local API on a unix socket: `status` and `serve-config` answer the given JSON,
/// anything else 404, as the daemon does. Checks the Host header the CLI sends.
pub struct Tailscaled {
    /// The socket, for `--tailscale-socket`.
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<std::sync::mpsc::Sender<()>>,
}

impl Tailscaled {
    /// Serve `status` and `serve_config` on a socket in a temp folder, until dropped (which
    /// removes the socket too: tailscaled gone).
    pub fn start(status: String, serve_config: String) -> Self {
        use http_body_util::Full;
        use hyper::body::Bytes;
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tailscaled.sock");
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let path = socket.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&path).unwrap();
                ready_tx.send(()).unwrap();
                loop {
                    if stopped.try_recv().is_ok() {
                        return;
                    }
                    let Ok(Ok((stream, _))) =
                        tokio::time::timeout(Duration::from_millis(50), listener.accept()).await
                    else {
                        continue;
                    };
                    let (status, serve) = (status.clone(), serve_config.clone());
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                            let (status, serve) = (status.clone(), serve.clone());
                            async move {
                                let host_ok = req
                                    .headers()
                                    .get("host")
                                    .is_some_and(|h| h == "local-tailscaled.sock");
                                let (code, body) = match (host_ok, req.uri().path()) {
                                    (false, _) => (403, "invalid host\n".to_string()),
                                    (true, "/localapi/v0/status") => (200, status),
                                    (true, "/localapi/v0/serve-config") => (200, serve),
                                    _ => (404, "404 page not found\n".to_string()),
                                };
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .status(code)
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(body)))
                                        .unwrap(),
                                )
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
        ready.recv_timeout(Duration::from_secs(5)).unwrap();
        Tailscaled {
            socket,
            _dir: dir,
            stop: Some(stop),
        }
    }
}

impl Drop for Tailscaled {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
