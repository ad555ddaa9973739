//! Semantic rules on a parsed stack. Every rule runs; every problem is reported in one pass.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use super::Plane;
use super::schema::{Resources, Stack};
use crate::source::{Problem, Seg, SourceFile};

/// Public ports Tailscale Funnel can listen on.
const FUNNEL_PORTS: [u16; 3] = [443, 8443, 10000];

struct Checker<'a> {
    file: &'a SourceFile,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn push(&mut self, path: &[Seg<'_>], message: String, help: Option<String>) {
        let mut p = Problem::at(message, self.file.locate(path));
        p.help = help;
        self.problems.push(p);
    }

    fn check(
        &mut self,
        path: &[Seg<'_>],
        value: &str,
        what: &str,
        ok: fn(&str) -> Result<(), String>,
    ) {
        if let Err(why) = ok(value) {
            self.push(
                path,
                format!("`{}` is not a valid {what}: {why}", dotted(path)),
                None,
            );
        }
    }

    fn resources(&mut self, base: &[Seg<'_>], r: &Resources) {
        let mut p = base.to_vec();
        p.push(Seg::Key("resources"));
        for (key, v) in [
            ("cpu", Some(&r.cpu)),
            ("memory", Some(&r.memory)),
            ("memory_limit", r.memory_limit.as_ref()),
        ] {
            if let Some(v) = v {
                let mut q = p.clone();
                q.push(Seg::Key(key));
                self.check(&q, v, "Kubernetes quantity", quantity);
            }
        }
    }
}

fn dotted(path: &[Seg<'_>]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

use Seg::Key as K;

/// Every semantic problem in `stack`, located in `file`.
pub fn validate(stack: &Stack, file: &SourceFile) -> Vec<Problem> {
    let mut c = Checker {
        file,
        problems: Vec::new(),
    };
    let st = &stack.stack;
    c.check(&[K("stack"), K("name")], &st.name, "stack name", dns_label);
    if st.namespace.is_some() {
        c.check(
            &[K("stack"), K("namespace")],
            st.namespace(),
            "namespace",
            dns_label,
        );
    }
    c.check(
        &[K("stack"), K("storage_class")],
        &st.storage_class,
        "storage class name",
        dns_subdomain,
    );
    c.check(
        &[K("stack"), K("labctl_image")],
        &st.labctl_image,
        "image reference",
        image_ref,
    );

    kube(&mut c, stack);
    host(&mut c, stack);
    ports(&mut c, stack);
    secrets(&mut c, stack);
    pipelines(&mut c, stack);
    c.problems
}

fn kube(c: &mut Checker<'_>, stack: &Stack) {
    let k = &stack.kube;
    // The same list the renderer uses: every enabled builtin kube component's common settings
    // (image, resources, storage) are checked by their names in it.
    let components = stack.components();
    for comp in components
        .iter()
        .filter(|comp| comp.plane == Plane::Kube && !comp.extra && comp.name != "stack")
    {
        let base = [K("kube"), K(&comp.name)];
        let at = |key: &'static str| [base[0], base[1], K(key)];
        let text = |key: &str| comp.settings.get(key).and_then(|v| v.as_str());
        // An empty collectors image means `stack.labctl_image`, checked with the stack.
        if let Some(image) = text("image").filter(|i| !i.is_empty()) {
            c.check(&at("image"), image, "image reference", image_ref);
        }
        if let Some(r) = comp
            .settings
            .get("resources")
            .and_then(|r| serde_json::from_value::<Resources>(r.clone()).ok())
        {
            c.resources(&base, &r);
        }
        if let Some(storage) = text("storage") {
            c.check(&at("storage"), storage, "Kubernetes quantity", quantity);
        }
    }
    if k.collectors.enabled {
        c.check(
            &[K("kube"), K("collectors"), K("interval")],
            &k.collectors.interval,
            "duration",
            duration,
        );
    }
    if k.minio.enabled {
        c.check(
            &[K("kube"), K("minio"), K("mc_image")],
            &k.minio.mc_image,
            "image reference",
            image_ref,
        );
        for (i, b) in k.minio.buckets.iter().enumerate() {
            c.check(
                &[K("kube"), K("minio"), K("buckets"), Seg::Index(i)],
                b,
                "bucket name",
                bucket,
            );
        }
    }
    if k.tempo.enabled {
        // Tempo parses retention as a Go duration, which has no days or weeks.
        c.check(
            &[K("kube"), K("tempo"), K("retention")],
            &k.tempo.retention,
            "Go duration",
            go_duration,
        );
    }
    if k.grafana.enabled && k.grafana.replicas > 1 {
        c.push(
            &[K("kube"), K("grafana"), K("replicas")],
            format!("`kube.grafana.replicas` is {}, but Grafana keeps its state on one ReadWriteOnce volume", k.grafana.replicas),
            Some("use 1 (or 0 to stop it)".into()),
        );
    }
    for (name, enabled, v) in [
        ("loki", k.loki.enabled, &k.loki.retention),
        ("prometheus", k.prometheus.enabled, &k.prometheus.retention),
    ] {
        if enabled {
            c.check(
                &[K("kube"), K(name), K("retention")],
                v,
                "duration",
                duration,
            );
        }
    }
    if k.prometheus.enabled {
        let v = &k.prometheus.scrape_interval;
        c.check(
            &[K("kube"), K("prometheus"), K("scrape_interval")],
            v,
            "duration",
            duration,
        );
    }
    // Stores that keep their data in MinIO must name a bucket MinIO creates.
    for (name, enabled, b) in [
        ("loki", k.loki.enabled, &k.loki.bucket),
        ("tempo", k.tempo.enabled, &k.tempo.bucket),
        ("thanos", k.thanos.enabled, &k.thanos.bucket),
    ] {
        if !enabled {
            continue;
        }
        if !k.minio.enabled {
            c.push(
                &[K("kube"), K(name)],
                format!("`kube.{name}` stores its data in MinIO, but `kube.minio` is disabled"),
                Some(format!("enable `kube.minio` or disable `kube.{name}`")),
            );
        } else if !k.minio.buckets.contains(b) {
            c.push(
                &[K("kube"), K(name), K("bucket")],
                format!("bucket `{b}` of `kube.{name}` is not in `kube.minio.buckets`"),
                Some(format!("add \"{b}\" to `kube.minio.buckets`")),
            );
        }
    }
    for name in k.extra.keys() {
        c.check(
            &[K("kube"), K("extra"), K(name)],
            name,
            "component name",
            dns_label,
        );
    }
}

fn host(c: &mut Checker<'_>, stack: &Stack) {
    let h = &stack.host;
    // The same list the renderer uses: every enabled unit, built-in services first, then extras.
    let components = stack.components();
    let mut units: BTreeMap<&str, Vec<Seg<'_>>> = BTreeMap::new();
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
        if let Some(first) = units.insert(u, path.clone()) {
            c.push(
                &path,
                format!(
                    "unit name `{u}` is used twice (also by `{}`)",
                    dotted(&first)
                ),
                Some("give every host service its own `unit`".into()),
            );
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
}

/// Only the proxy may be public: anything else behind the funnel would put an unauthenticated
/// service on the internet.
fn funnel(c: &mut Checker<'_>, stack: &Stack) {
    let h = &stack.host;
    if !h.gate.enabled {
        return;
    }
    let mut seen = BTreeMap::new();
    for (i, f) in h.gate.funnel.iter().enumerate() {
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

fn ports(c: &mut Checker<'_>, stack: &Stack) {
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
fn pipelines(c: &mut Checker<'_>, stack: &Stack) {
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

/// Every `[secrets]` entry names one well-formed source.
fn secrets(c: &mut Checker<'_>, stack: &Stack) {
    for (name, decl) in &stack.secrets {
        let path = [K("secrets"), K(name)];
        if let Err(why) = secret_name(name) {
            c.push(
                &path,
                format!("`{name}` is not a valid secret name: {why}"),
                None,
            );
        }
        if let Err(why) = decl.from(name) {
            c.push(
                &path,
                format!("secret `{name}`: {why}"),
                Some(
                    "a source is `{ bao = \"<mount>/<path>\", key = \"<field>\" }`, \
                     `{ env = \"VAR\" }` or `{ file = \"PATH\" }`"
                        .into(),
                ),
            );
        }
    }
}

/// What the templates ask of `[secrets]`, checked against it: see [`secret_usage`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretUsage {
    /// Secrets a template uses that nothing provides (errors).
    pub problems: Vec<Problem>,
    /// Secrets declared in `[secrets]` that no template uses (warnings).
    pub warnings: Vec<Problem>,
}

/// Check `[secrets]` against `used`: each secret name the enabled components' templates ask for,
/// with the templates asking. A used secret is provided by its `[secrets]` entry or, when
/// `[host.openbao]` is enabled, by the default OpenBao source; a declared one nobody uses is a
/// warning. Malformed entries are [`validate`]'s business, not repeated here.
pub fn secret_usage(
    stack: &Stack,
    file: &SourceFile,
    used: &BTreeMap<String, BTreeSet<String>>,
) -> SecretUsage {
    let mut out = SecretUsage::default();
    for (name, templates) in used {
        if stack.secret_from(name).is_some() {
            continue;
        }
        let by = templates
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let var = format!(
            "LABCTL_SECRET_{}",
            name.to_ascii_uppercase().replace('-', "_")
        );
        // Point at `[secrets]` when the file has one: that is where the fix goes.
        let span = file.locate(&[K("secrets")]);
        out.problems.push(
            Problem::at(
                format!("secret `{name}` is used by {by}, but nothing provides it"),
                span,
            )
            .help(format!(
                "add `{name} = {{ env = \"{var}\" }}` (or a `bao`/`file` source) to [secrets], \
                 or enable [host.openbao] to read it from OpenBao"
            )),
        );
    }
    for name in stack.secrets.keys() {
        if !used.contains_key(name) {
            out.warnings.push(
                Problem::at(
                    format!("secret `{name}` is declared but no template uses it"),
                    file.locate(&[K("secrets"), K(name)]),
                )
                .help("remove it from [secrets], or check the name for a typo"),
            );
        }
    }
    out
}

/// A secret's name: what `secret("...")` takes and `LABCTL_SECRET_<NAME>` can spell.
///
/// # Errors
/// What is wrong with it, for a message.
pub fn secret_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty".into());
    }
    if let Some(ch) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "`{ch}` is not allowed (lowercase letters, digits, `-` and `_`)"
        ));
    }
    Ok(())
}

/// A DNS-1123 label: what Kubernetes accepts as a namespace or Service name.
pub fn dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err("must be 1 to 63 characters".into());
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("only lowercase letters, digits and `-` are allowed".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

fn dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    s.split('.').try_for_each(dns_label)
}

fn bucket(s: &str) -> Result<(), String> {
    if s.len() < 3 {
        return Err("S3 bucket names have at least 3 characters".into());
    }
    dns_label(s)
}

/// A systemd unit base name (without the `.service` suffix).
fn unit_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 240 {
        return Err("must be 1 to 240 characters".into());
    }
    if let Some(ch) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":_.-\\".contains(*c)))
    {
        return Err(format!("`{ch}` is not allowed in unit names"));
    }
    if s.contains('.') {
        return Err("give the base name only; labctl adds `.service`/`.timer`".into());
    }
    Ok(())
}

/// A Kubernetes resource quantity: `100m`, `1.5Gi`, `2e3`.
pub fn quantity(s: &str) -> Result<(), String> {
    let num_end = s
        .char_indices()
        .find(|(i, ch)| {
            !(ch.is_ascii_digit() || *ch == '.' || (*i == 0 && (*ch == '+' || *ch == '-')))
        })
        .map_or(s.len(), |(i, _)| i);
    let (num, suffix) = s.split_at(num_end);
    let digits = num.trim_start_matches(['+', '-']);
    if digits.is_empty() || digits == "." || digits.matches('.').count() > 1 {
        return Err("expected a number such as `512Mi`, `2Gi` or `250m`".into());
    }
    const SUFFIXES: [&str; 14] = [
        "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T",
    ];
    let exp = suffix
        .strip_prefix(['e', 'E'])
        .map(|e| e.trim_start_matches(['+', '-']));
    if SUFFIXES.contains(&suffix) || suffix == "P" || suffix == "E" {
        return Ok(());
    }
    if let Some(e) = exp
        && !e.is_empty()
        && e.bytes().all(|b| b.is_ascii_digit())
    {
        return Ok(());
    }
    Err(format!(
        "unknown suffix `{suffix}` (use Ki, Mi, Gi, Ti, m, k, M, G, ...)"
    ))
}

/// A container image reference: `[registry[:port]/]path[:tag][@digest]`.
pub fn image_ref(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty".into());
    }
    if s.chars().any(char::is_whitespace) {
        return Err("contains white space".into());
    }
    let (name, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((algo, hex)) = d.split_once(':') else {
            return Err(format!("digest `{d}` must be `algorithm:hex`"));
        };
        if algo.is_empty() || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("digest `{d}` is malformed"));
        }
    }
    // A tag is after the last ':' that comes after the last '/' (a registry port comes before it).
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            && !t.starts_with(['.', '-']);
        if !ok {
            return Err(format!("tag `{t}` is malformed"));
        }
    }
    let mut parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        let host_ok = host
            .split_once(':')
            .is_none_or(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
        if !host_ok {
            return Err(format!("registry `{host}` is malformed"));
        }
    }
    for p in parts {
        let ok = !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && p.as_bytes()[0].is_ascii_alphanumeric()
            && p.as_bytes()[p.len() - 1].is_ascii_alphanumeric();
        if !ok {
            return Err(format!(
                "path component `{p}` must be lowercase letters, digits and separators"
            ));
        }
    }
    Ok(())
}

/// A Prometheus/Go style duration: `30s`, `5m`, `1h30m`, `744h`, `15d`.
pub fn duration(s: &str) -> Result<(), String> {
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty".into());
    }
    while !rest.is_empty() {
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(
                "expected a number followed by a unit, such as `30s`, `5m` or `1h30m`".into(),
            );
        }
        rest = &rest[n..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return Err("the unit must be one of ms, s, m, h, d, w, y".into()),
        }
    }
    // The compact form above is what Prometheus and Loki read; humantime (the agents' parser)
    // catches what it cannot hold.
    humantime::parse_duration(s)
        .map(|_| ())
        .map_err(|_| "too long a duration".into())
}

/// A Go `time.Duration`: like [`duration`] without days, weeks or years.
fn go_duration(s: &str) -> Result<(), String> {
    duration(s)?;
    if s.contains(['d', 'w', 'y']) {
        return Err("Go durations have no days, weeks or years: use hours, such as `336h`".into());
    }
    Ok(())
}

/// The common forms of systemd's `OnCalendar=` (systemd.time(7)): shorthands, and
/// `[weekdays] [date] [time]` with `*`, lists, `..` ranges and `/` repetitions.
pub fn on_calendar(s: &str) -> Result<(), String> {
    const SHORT: [&str; 10] = [
        "minutely",
        "hourly",
        "daily",
        "weekly",
        "monthly",
        "yearly",
        "annually",
        "quarterly",
        "semiannually",
        "semi-annually",
    ];
    let s = s.trim();
    if SHORT.contains(&s.to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    let mut words: Vec<&str> = s.split_whitespace().collect();
    // A trailing timezone is allowed.
    if words.len() > 1 && words.last().is_some_and(|w| *w == "UTC" || w.contains('/')) {
        words.pop();
    }
    if words.is_empty() || words.len() > 3 {
        return Err("expected `[weekdays] [date] [time]` or a shorthand such as `daily`".into());
    }
    let mut i = 0;
    if words.len() == 1 && words[0].chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(format!(
            "`{}` is not a shorthand (minutely, hourly, daily, weekly, monthly, yearly, ...) \
             and has no time",
            words[0]
        ));
    }
    if words[i]
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
    {
        weekdays(words[i])?;
        i += 1;
    }
    let mut seen_date = false;
    let mut seen_time = false;
    for w in &words[i..] {
        if w.contains(':') && !seen_time {
            fields(w, ':', &[(0, 23), (0, 59), (0, 59)], 2, "time")?;
            seen_time = true;
        } else if w.contains('-') && !seen_date && !seen_time {
            fields(w, '-', &[(1970, 2199), (1, 12), (1, 31)], 2, "date")?;
            seen_date = true;
        } else {
            return Err(format!(
                "`{w}` is neither a date (`*-*-*`) nor a time (`03:00`)"
            ));
        }
    }
    if i == words.len() {
        return Err("nothing after the weekdays: add a time such as `09:00`".into());
    }
    Ok(())
}

fn weekdays(w: &str) -> Result<(), String> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let day = |d: &str| {
        let l = d.to_ascii_lowercase();
        let full = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        if DAYS.contains(&l.as_str()) || full.contains(&l.as_str()) {
            Ok(())
        } else {
            Err(format!("`{d}` is not a weekday (Mon, Tue, ... Sun)"))
        }
    };
    for part in w.split(',') {
        match part.split_once("..") {
            Some((a, b)) => {
                day(a)?;
                day(b)?;
            }
            None => day(part)?,
        }
    }
    Ok(())
}

fn fields(w: &str, sep: char, ranges: &[(u32, u32)], min: usize, what: &str) -> Result<(), String> {
    let parts: Vec<&str> = w.split(sep).collect();
    // Dates may omit the year (`*-01`... is month-day); times may omit seconds.
    if parts.len() < min || parts.len() > ranges.len() {
        return Err(format!("`{w}` is not a valid {what}"));
    }
    let ranges = if what == "date" {
        &ranges[ranges.len() - parts.len()..]
    } else {
        &ranges[..parts.len()]
    };
    for (part, &(lo, hi)) in parts.iter().zip(ranges) {
        for item in part.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, st)) => (r, Some(st)),
                None => (item, None),
            };
            if let Some(st) = step
                && !st.parse::<u32>().is_ok_and(|n| n > 0)
            {
                return Err(format!(
                    "repetition `/{st}` in `{w}` must be a positive number"
                ));
            }
            if range == "*" {
                continue;
            }
            for n in range.split("..") {
                // Seconds may carry a fraction.
                let n = n.split('.').next().unwrap_or(n);
                match n.parse::<u32>() {
                    Ok(v) if (lo..=hi).contains(&v) => {}
                    _ => return Err(format!("`{n}` in `{w}` is out of range {lo}..{hi}")),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_forms() {
        for ok in [
            "daily",
            "hourly",
            "weekly",
            "*-*-* 03:00:00",
            "Mon..Fri 09:00",
            "Sat,Sun 10:30",
            "*-*-01 00:00",
            "2026-12-24 18:00:00",
            "*:0/15",
            "Mon *-*-* 00:00:00",
            "*-*-* 03:00 UTC",
        ] {
            assert_eq!(on_calendar(ok), Ok(()), "{ok}");
        }
        for bad in [
            "sometimes",
            "*-*-* 25:00",
            "Mon..Fry 09:00",
            "Mon",
            "*-13-* 00:00",
            "*:0/0",
            "",
        ] {
            assert!(on_calendar(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quantities() {
        for ok in ["1", "100m", "1.5Gi", "512Mi", "2e3", "1E", "0.5"] {
            assert_eq!(quantity(ok), Ok(()), "{ok}");
        }
        for bad in ["", "Gi", "1GB", "1.2.3Mi", "ten", "1 Gi"] {
            assert!(quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn images() {
        for ok in [
            "nginx",
            "grafana/grafana:11.4.0",
            "quay.io/minio/minio:RELEASE.2024-12-18T13-15-44Z",
            "localhost:5000/x/y:1",
            "registry.example.com/a/b@sha256:0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(image_ref(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Grafana/grafana",
            "grafana:",
            "a b",
            "x@sha256:zz",
            "reg:abc/x",
        ] {
            assert!(image_ref(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        for ok in ["30s", "5m", "1h30m", "744h", "15d", "500ms"] {
            assert_eq!(duration(ok), Ok(()), "{ok}");
        }
        for bad in ["", "5", "m5", "5 minutes", "1.5h", "99999999999999999h"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }
}
