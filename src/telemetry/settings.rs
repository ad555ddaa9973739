//! The OpenTelemetry environment (`OTEL_EXPORTER_OTLP_ENDPOINT`, `_PROTOCOL`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SDK_DISABLED`, ...) read into [`Settings`]; a malformed value
//! names its variable.

use std::time::Duration;

/// The wire protocol of the OTLP exporters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// OTLP over gRPC (`grpc`), as to port 4317.
    Grpc,
    /// OTLP over HTTP with protobuf bodies (`http/protobuf`, the default), as to port 4318.
    HttpProtobuf,
}

/// Where and how to export, as resolved from the flag and the `OTEL_*` environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The collector's base URL (`http://host:port`, no trailing slash).
    pub endpoint: String,
    /// The protocol.
    pub protocol: Proto,
    /// `service.name`.
    pub service_name: String,
    /// Further resource attributes from `OTEL_RESOURCE_ATTRIBUTES`, in order.
    pub attributes: Vec<(String, String)>,
    /// How often metrics are exported (`OTEL_METRIC_EXPORT_INTERVAL`, ms; default 60 s).
    pub metric_interval: Duration,
}

impl Settings {
    /// Resolve the settings of a process whose default `service.name` is `service`, with the
    /// `--otlp-endpoint` value `flag` overriding `OTEL_EXPORTER_OTLP_ENDPOINT`; `env` reads the
    /// environment. `Ok(None)`: nothing to export (no endpoint, or `OTEL_SDK_DISABLED=true`).
    ///
    /// # Errors
    /// A message naming the variable (or flag) whose value is malformed, and why.
    pub fn resolve(
        service: &str,
        flag: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, String> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        match var("OTEL_SDK_DISABLED").map(|v| v.trim().to_ascii_lowercase()) {
            Some(v) if v == "true" => return Ok(None),
            Some(v) if v != "false" => {
                return Err(format!(
                    "`OTEL_SDK_DISABLED` is `{v}`; expected `true` or `false`"
                ));
            }
            _ => {}
        }
        let (endpoint, source) = match flag.filter(|f| !f.trim().is_empty()) {
            Some(f) => (f.trim().to_string(), "--otlp-endpoint"),
            None => match var("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(e) => (e.trim().to_string(), "OTEL_EXPORTER_OTLP_ENDPOINT"),
                None => return Ok(None),
            },
        };
        let endpoint = check_endpoint(&endpoint).map_err(|why| format!("`{source}`: {why}"))?;
        let protocol = match var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref().map(str::trim) {
            None | Some("http/protobuf") => Proto::HttpProtobuf,
            Some("grpc") => Proto::Grpc,
            Some(other) => {
                return Err(format!(
                    "`OTEL_EXPORTER_OTLP_PROTOCOL` is `{other}`; expected `grpc` or `http/protobuf`"
                ));
            }
        };
        let attributes = match var("OTEL_RESOURCE_ATTRIBUTES") {
            Some(a) => {
                parse_attributes(&a).map_err(|why| format!("`OTEL_RESOURCE_ATTRIBUTES`: {why}"))?
            }
            None => Vec::new(),
        };
        let service_name = var("OTEL_SERVICE_NAME")
            .map(|s| s.trim().to_string())
            .or_else(|| {
                attributes
                    .iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| service.to_string());
        let metric_interval = match var("OTEL_METRIC_EXPORT_INTERVAL") {
            Some(ms) => match ms.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return Err(format!(
                        "`OTEL_METRIC_EXPORT_INTERVAL` is `{ms}`; expected a positive number of milliseconds"
                    ));
                }
            },
            None => Duration::from_secs(60),
        };
        Ok(Some(Settings {
            endpoint,
            protocol,
            service_name,
            attributes,
            metric_interval,
        }))
    }
}

/// An `http://host:port` URL without a trailing slash. `https` needs TLS, which this build leaves
/// out (collectors on a homelab are reached over the tailnet or the node's port).
pub(super) fn check_endpoint(url: &str) -> Result<String, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "`{url}`: https is not supported by this build; use an http:// endpoint"
            ));
        }
        _ => return Err(format!("`{url}` is not an http:// URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{url}` names no host"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// `key=value,key2=value2` with percent-encoded values, as the OpenTelemetry spec writes it.
pub(super) fn parse_attributes(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("`{pair}` is not `key=value`"));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("`{pair}` has an empty key"));
        }
        out.push((k.to_string(), percent_decode(v.trim())?));
    }
    Ok(out)
}

pub(super) fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("`{s}` has a bad percent escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` does not decode to UTF-8"))
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::HashMap;

    use super::*;

    /// An environment of `pairs` only, as the settings read it.
    pub(in crate::telemetry) fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn no_endpoint_or_disabled_exports_nothing() {
        assert_eq!(Settings::resolve("labctl", None, env(&[])), Ok(None));
        let disabled = env(&[
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x:4318"),
        ]);
        assert_eq!(
            Settings::resolve("labctl", Some("http://y:4317"), disabled),
            Ok(None)
        );
    }

    #[test]
    fn flag_overrides_env_and_standard_variables_apply() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=lab, team=a%2Cb",
            ),
            ("OTEL_SDK_DISABLED", "false"),
        ]);
        let s = Settings::resolve("labctl-proxy", Some("http://flag:4317/"), e)
            .unwrap()
            .unwrap();
        assert_eq!(s.endpoint, "http://flag:4317");
        assert_eq!(s.protocol, Proto::Grpc);
        assert_eq!(s.service_name, "labctl-proxy");
        assert_eq!(
            s.attributes,
            vec![
                ("deployment.environment".into(), "lab".into()),
                ("team".into(), "a,b".into())
            ]
        );
        let named = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
            ("OTEL_SERVICE_NAME", "mine"),
        ]);
        let s = Settings::resolve("labctl", None, named).unwrap().unwrap();
        assert_eq!(
            (s.service_name.as_str(), s.protocol),
            ("mine", Proto::HttpProtobuf)
        );
    }

    #[test]
    fn malformed_values_name_the_variable() {
        let cases = [
            ("OTEL_SDK_DISABLED", "yes", "`OTEL_SDK_DISABLED`"),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "http/json",
                "`OTEL_EXPORTER_OTLP_PROTOCOL`",
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "novalue",
                "`OTEL_RESOURCE_ATTRIBUTES`",
            ),
            ("OTEL_RESOURCE_ATTRIBUTES", "a=%zz", "bad percent escape"),
            (
                "OTEL_METRIC_EXPORT_INTERVAL",
                "soon",
                "`OTEL_METRIC_EXPORT_INTERVAL`",
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "localhost:4317",
                "`OTEL_EXPORTER_OTLP_ENDPOINT`",
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://c:4317",
                "https is not supported",
            ),
        ];
        for (var, value, want) in cases {
            let mut pairs = vec![(var, value)];
            if var != "OTEL_EXPORTER_OTLP_ENDPOINT" {
                pairs.push(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"));
            }
            let err = Settings::resolve("labctl", None, env(&pairs)).unwrap_err();
            assert!(err.contains(want), "{var}={value}: {err}");
        }
    }
}
