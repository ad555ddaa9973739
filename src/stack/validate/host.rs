//! Rules on `[host]`: the agents' settings, the funnel (only the proxy's port, ever), the ports
//! nothing may share, and the proxy's pipelines.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::formats::*;
use super::{Checker, dotted};
use crate::source::Seg;
use crate::stack::Plane;
use crate::stack::schema::{LOCAL_HOST, Stack};
use Seg::Key as K;

/// Public ports Tailscale Funnel can listen on.
const FUNNEL_PORTS: [u16; 3] = [443, 8443, 10000];

pub(super) fn host(c: &mut Checker<'_>, stack: &Stack) {
    let h = &stack.host;
    // The same list the renderer uses: every enabled unit, built-in services first, then extras.
    let components = stack.components();
    // Two components may use one unit name on different hosts, never on the same one.
    let mut units: BTreeMap<(&str, &str), Vec<Seg<'_>>> = BTreeMap::new();
    for comp in components
        .iter()
        .filter(|comp| comp.plane == Plane::Systemd)
    {
        let u = comp.unit.as_deref().unwrap_or(&comp.name);
        let path = if h.extra.contains_key(&comp.name) {
            vec![K("host"), K("extra"), K(&comp.name)]
        } else {
            vec![K("host"), K(&comp.name), K("unit")]
        };
        c.check(&path, u, "unit name", unit_name);
        // `unit nas:x.service` names unit `x` on host `nas`: a local unit may not read the same.
        if let Some((prefix, _)) = u.split_once(':')
            && stack.hosts.contains_key(prefix)
        {
            c.push(
                &path,
                format!(
                    "unit name `{u}` reads as unit `{}` on host `{prefix}`",
                    &u[prefix.len() + 1..]
                ),
                Some(format!(
                    "place it on the host instead: `hosts = [\"{prefix}\"]`"
                )),
            );
        }
        // Each host once: a host listed twice is its own problem (see `hosts`).
        for host in comp.hosts.iter().collect::<std::collections::BTreeSet<_>>() {
            if let Some(first) = units.insert((host, u), path.clone()) {
                let on = if comp.hosts.len() > 1 || host != LOCAL_HOST {
                    format!(" on host `{host}`")
                } else {
                    String::new()
                };
                c.push(
                    &path,
                    format!(
                        "unit name `{u}` is used twice{on} (also by `{}`)",
                        dotted(&first)
                    ),
                    Some("give every host service its own `unit`".into()),
                );
            }
        }
    }

    if h.proxy.enabled && h.proxy.listen.parse::<IpAddr>().is_err() {
        c.push(
            &[K("host"), K("proxy"), K("listen")],
            format!(
                "`host.proxy.listen` is not an IP address: `{}`",
                h.proxy.listen
            ),
            Some("for example \"127.0.0.1\" or \"0.0.0.0\"".into()),
        );
    }
    if h.openbao.enabled && h.openbao.listen.parse::<SocketAddr>().is_err() {
        c.push(
            &[K("host"), K("openbao"), K("listen")],
            format!(
                "`host.openbao.listen` is not an address with a port: `{}`",
                h.openbao.listen
            ),
            Some("for example \"127.0.0.1:8200\"".into()),
        );
    }
    for (name, enabled, v) in [
        ("collector", h.collector.enabled, &h.collector.interval),
        ("ingest", h.ingest.enabled, &h.ingest.interval),
        ("gate", h.gate.enabled, &h.gate.interval),
    ] {
        if enabled {
            c.check(
                &[K("host"), K(name), K("interval")],
                v,
                "duration",
                duration,
            );
        }
    }
    if h.reading_sync.enabled {
        let rs = &h.reading_sync;
        c.check(
            &[K("host"), K("reading-sync"), K("schedule")],
            &rs.schedule,
            "OnCalendar= schedule",
            on_calendar,
        );
        c.check(
            &[K("host"), K("reading-sync"), K("randomized_delay")],
            &rs.randomized_delay,
            "duration",
            duration,
        );
        if rs.command.trim().is_empty() {
            c.push(
                &[K("host"), K("reading-sync"), K("command")],
                "`host.reading-sync.command` is empty".into(),
                None,
            );
        }
    }
    if h.ingest.enabled
        && h.ingest
            .repository
            .split('/')
            .filter(|p| !p.is_empty())
            .count()
            != 2
    {
        c.push(
            &[K("host"), K("ingest"), K("repository")],
            format!(
                "`host.ingest.repository` must be `owner/name`, not `{}`",
                h.ingest.repository
            ),
            None,
        );
    }
    funnel(c, stack);
    line_breaks(c, stack);
}

/// Every string of the built-in host services ends up inside a line of a unit file: a line break
/// (or another control character) in one would end that line and start a directive of its own
/// (`command = "sync\nExecStartPre=…"`). Found by the `template_values` fuzz target. Extras'
/// values are left to their own templates.
fn line_breaks(c: &mut Checker<'_>, stack: &Stack) {
    fn walk<'a>(
        v: &'a serde_json::Value,
        path: &mut Vec<Seg<'a>>,
        found: &mut Vec<(Vec<Seg<'a>>, char)>,
    ) {
        match v {
            serde_json::Value::String(s) => {
                if let Some(ch) = s.chars().find(|ch| ch.is_control() && *ch != '\t') {
                    found.push((path.clone(), ch));
                }
            }
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if path.len() == 1 && k == "extra" {
                        continue;
                    }
                    path.push(K(k));
                    walk(v, path, found);
                    path.pop();
                }
            }
            serde_json::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    path.push(Seg::Index(i));
                    walk(v, path, found);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let Ok(host) = serde_json::to_value(&stack.host) else {
        return;
    };
    let mut found = Vec::new();
    walk(&host, &mut vec![K("host")], &mut found);
    for (path, ch) in found {
        c.push(
            &path,
            format!(
                "`{}` holds a control character ({ch:?}): it is written into a line of a unit file, which it would break",
                dotted(&path)
            ),
            Some("write it on one line".into()),
        );
    }
}

/// Only the proxy may be public: anything else behind the funnel would put an unauthenticated
/// service on the internet.
pub(super) fn funnel(c: &mut Checker<'_>, stack: &Stack) {
    let h = &stack.host;
    if !h.gate.enabled {
        return;
    }
    let mut seen = BTreeMap::new();
    for (i, f) in h.gate.funnel.iter().flatten().enumerate() {
        let at = |k| [K("host"), K("gate"), K("funnel"), Seg::Index(i), K(k)];
        if !FUNNEL_PORTS.contains(&f.public_port) {
            c.push(
                &at("public_port"),
                format!(
                    "funnel public port {} is not one Tailscale Funnel can serve",
                    f.public_port
                ),
                Some("use 443, 8443 or 10000".into()),
            );
        }
        if let Some(first) = seen.insert(f.public_port, i) {
            c.push(
                &at("public_port"),
                format!(
                    "funnel public port {} is declared twice (also `host.gate.funnel[{first}]`)",
                    f.public_port
                ),
                None,
            );
        }
        if !h.proxy.enabled {
            c.push(
                &at("target_port"),
                format!("the funnel forwards to port {}, but `host.proxy` is disabled", f.target_port),
                Some("only the proxy may be exposed publicly: enable `host.proxy` or disable `host.gate`".into()),
            );
        } else if f.target_port != h.proxy.port {
            c.push(
                &at("target_port"),
                format!(
                    "the funnel may only expose the proxy (port {}), not port {}",
                    h.proxy.port, f.target_port
                ),
                Some(
                    "every other service is internal and unauthenticated; put it behind the proxy \
                     instead"
                        .into(),
                ),
            );
        }
    }
}

pub(super) fn ports(c: &mut Checker<'_>, stack: &Stack) {
    let k = &stack.kube;
    let h = &stack.host;
    let mut node_ports: Vec<(u16, Vec<Seg<'_>>)> = Vec::new();
    if k.grafana.enabled {
        node_ports.push((
            k.grafana.node_port,
            vec![K("kube"), K("grafana"), K("node_port")],
        ));
    }
    if k.otel_collector.enabled {
        let o = &k.otel_collector;
        node_ports.push((
            o.grpc_node_port,
            vec![K("kube"), K("otel-collector"), K("grpc_node_port")],
        ));
        node_ports.push((
            o.http_node_port,
            vec![K("kube"), K("otel-collector"), K("http_node_port")],
        ));
    }
    if k.postgres.enabled {
        node_ports.push((
            k.postgres.node_port,
            vec![K("kube"), K("postgres"), K("node_port")],
        ));
    }
    for (port, path) in &node_ports {
        if !(30000..=32767).contains(port) {
            c.push(
                path,
                format!(
                    "NodePort {port} of `{}` is outside 30000-32767",
                    dotted(path)
                ),
                Some("Kubernetes only allocates NodePorts in 30000-32767".into()),
            );
        }
    }
    // NodePorts listen on the host too, so they share one space with the host services' ports.
    let mut host_ports = node_ports;
    if h.proxy.enabled {
        host_ports.push((h.proxy.port, vec![K("host"), K("proxy"), K("port")]));
    }
    if h.openbao.enabled
        && let Ok(a) = h.openbao.listen.parse::<SocketAddr>()
    {
        host_ports.push((a.port(), vec![K("host"), K("openbao"), K("listen")]));
        host_ports.push((
            h.openbao.cluster_port,
            vec![K("host"), K("openbao"), K("cluster_port")],
        ));
    }
    let mut seen: BTreeMap<u16, &[Seg<'_>]> = BTreeMap::new();
    let mut dups = Vec::new();
    for (port, path) in &host_ports {
        if let Some(first) = seen.insert(*port, path) {
            dups.push((*port, path.clone(), dotted(first)));
        }
    }
    for (port, path, first) in dups {
        c.push(
            &path,
            format!(
                "port {port} of `{}` is already used by `{first}`",
                dotted(&path)
            ),
            None,
        );
    }
}

/// `[host.proxy.pipelines.<name>]`: a name that makes a URL path and an environment variable, a
/// unit name, a rate limit; never one of labctl's own agents (a public request must not restart
/// the proxy or the gate).
pub(super) fn pipelines(c: &mut Checker<'_>, stack: &Stack) {
    let h = &stack.host;
    if !h.proxy.enabled {
        return;
    }
    let own = [
        &h.proxy.unit,
        &h.gate.unit,
        &h.collector.unit,
        &h.ingest.unit,
        &h.openbao.unit,
    ];
    for (name, p) in &h.proxy.pipelines {
        let base = [K("host"), K("proxy"), K("pipelines"), K(name)];
        c.check(&base, name, "pipeline name", dns_label);
        let at = |k| [K("host"), K("proxy"), K("pipelines"), K(name), K(k)];
        c.check(&at("unit"), &p.unit, "unit name", unit_name);
        if own.contains(&&p.unit) {
            c.push(
                &at("unit"),
                format!(
                    "pipeline `{name}` would start `{}`, one of labctl's own agents",
                    p.unit
                ),
                Some("a pipeline runs a data job: give it a unit of its own".into()),
            );
        }
        if let Err(e) = humantime::parse_duration(&p.min_interval) {
            c.push(
                &at("min_interval"),
                format!("`host.proxy.pipelines.{name}.min_interval` is not a duration: {e}"),
                Some("for example \"30s\", \"5m\" or \"0s\" for no limit".into()),
            );
        }
    }
}
