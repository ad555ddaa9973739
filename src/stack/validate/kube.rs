//! Rules on `[kube]`: names, sizes, images and schedules of the cluster's components.

use super::Checker;
use super::formats::*;
use crate::source::Seg;
use crate::stack::Plane;
use crate::stack::schema::{Resources, Stack};
use Seg::Key as K;

pub(super) fn kube(c: &mut Checker<'_>, stack: &Stack) {
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
    // Stores that keep their data in MinIO need it; MinIO creates every bucket they name.
    for (name, enabled) in [
        ("loki", k.loki.enabled),
        ("tempo", k.tempo.enabled),
        ("thanos", k.thanos.enabled),
    ] {
        if enabled && !k.minio.enabled {
            c.push(
                &[K("kube"), K(name)],
                format!("`kube.{name}` stores its data in MinIO, but `kube.minio` is disabled"),
                Some(format!("enable `kube.minio` or disable `kube.{name}`")),
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
