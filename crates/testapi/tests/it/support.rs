//! A tiny blocking HTTP/1.1 client for the tests (no client crate needed).

use std::io::{Read, Write};
use std::net::TcpStream;

use labctl_testapi::TestApiServer;
use serde_json::Value;

/// A response: status, headers (lower-cased names), body.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    /// A header's value, by its lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a connection of its own; the response, its chunked body joined.
pub fn request(
    srv: &TestApiServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let mut s = TcpStream::connect(srv.addr()).expect("connect");
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        srv.addr(),
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// `GET path`.
pub fn get(srv: &TestApiServer, path: &str) -> Resp {
    request(srv, "GET", path, &[], None)
}

/// A server-side apply of YAML `body` to `path` by field manager `manager`.
pub fn apply(srv: &TestApiServer, path: &str, manager: &str, body: &str) -> Resp {
    apply_q(srv, path, &format!("fieldManager={manager}"), body)
}

/// A server-side apply of YAML `body` to `path` with query string `query`.
pub fn apply_q(srv: &TestApiServer, path: &str, query: &str, body: &str) -> Resp {
    request(
        srv,
        "PATCH",
        &format!("{path}?{query}"),
        &[("Content-Type", "application/apply-patch+yaml")],
        Some(body),
    )
}

/// A test API server with the default options.
pub fn start() -> TestApiServer {
    TestApiServer::start_blocking(labctl_testapi::Options::default()).expect("start")
}
