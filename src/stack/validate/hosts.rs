//! Rules on `[hosts.<name>]` and on where host components run (`hosts = [...]`): every host
//! named exists, a component that must run once runs on one host, and the agents that work
//! together run together.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::formats::dns_label;
use super::{Checker, dotted};
use crate::source::Seg;
use crate::stack::Plane;
use crate::stack::schema::{LOCAL_HOST, Stack};
use Seg::Key as K;

/// Host components that must run on exactly one host: two proxies would sync (and apply) the
/// same push twice, two gates fight over one funnel, two OpenBao servers split the secrets, two
/// ingesters write every journal entry twice.
const SINGLETONS: [&str; 4] = ["proxy", "gate", "openbao", "ingest"];

pub(super) fn hosts(c: &mut Checker<'_>, stack: &Stack) {
    for (name, h) in &stack.hosts {
        let base = [K("hosts"), K(name)];
        if name == LOCAL_HOST {
            c.push(
                &base,
                "`hosts.local` is taken: `local` is the machine labctl runs on (`[host]`)".into(),
                Some("give this host another name".into()),
            );
        } else {
            c.check(&base, name, "host name", dns_label);
        }
        let at = [K("hosts"), K(name), K("ssh")];
        if let Err(why) = destination(&h.ssh) {
            c.push(
                &at,
                format!("`hosts.{name}.ssh` is not an ssh destination: {why}"),
                Some("`user@host`, or a `Host` of your ssh config".into()),
            );
        }
        if let Some(dir) = &h.unit_dir
            && !dir.is_absolute()
        {
            c.push(
                &[K("hosts"), K(name), K("unit_dir")],
                format!(
                    "`hosts.{name}.unit_dir` must be an absolute path, not `{}`",
                    dir.display()
                ),
                None,
            );
        }
    }

    let known: Vec<&str> = std::iter::once(LOCAL_HOST)
        .chain(stack.hosts.keys().map(String::as_str))
        .collect();
    let listed = || {
        known
            .iter()
            .map(|h| format!("`{h}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for comp in stack
        .all_components()
        .iter()
        .filter(|comp| comp.plane == Plane::Systemd && comp.settings.get("hosts").is_some())
    {
        let path = placement(stack, &comp.name);
        if comp.hosts.is_empty() {
            c.push(
                &path,
                format!(
                    "`{}` is empty: it places the component nowhere",
                    dotted(&path)
                ),
                Some("list at least one host, or set `enabled = false`".into()),
            );
        }
        let mut seen = BTreeSet::new();
        for (i, h) in comp.hosts.iter().enumerate() {
            let mut at = path.clone();
            at.push(Seg::Index(i));
            if !known.contains(&h.as_str()) {
                c.push(
                    &at,
                    format!("unknown host `{h}` in `{}`", dotted(&path)),
                    Some(format!(
                        "declare it as `[hosts.{h}]`, or use one of {}",
                        listed()
                    )),
                );
            } else if !seen.insert(h) {
                c.push(
                    &at,
                    format!("host `{h}` is listed twice in `{}`", dotted(&path)),
                    None,
                );
            }
        }
    }

    let placed = |name: &str| -> Vec<String> {
        stack
            .all_components()
            .into_iter()
            .find(|comp| comp.plane == Plane::Systemd && comp.name == name)
            .map(|comp| comp.hosts)
            .unwrap_or_default()
    };
    let enabled = |name: &str| {
        stack
            .components()
            .iter()
            .any(|comp| comp.plane == Plane::Systemd && comp.name == name)
    };
    for name in SINGLETONS {
        let on = placed(name);
        if enabled(name) && on.len() > 1 {
            c.push(
                &placement(stack, name),
                format!(
                    "`host.{name}` runs on one host only, but is placed on {}",
                    on.iter()
                        .map(|h| format!("`{h}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
                Some("keep one host in its `hosts`".into()),
            );
        }
    }
    let proxy_on = placed("proxy");
    if enabled("proxy") && proxy_on.len() == 1 && proxy_on[0] != LOCAL_HOST {
        c.push(
            &placement(stack, "proxy"),
            format!(
                "`host.proxy` applies the stack, so it runs where labctl runs (`local`), not on `{}`",
                proxy_on[0]
            ),
            Some(
                "`local` is the machine that applies the stack: run labctl (and the proxy) there"
                    .into(),
            ),
        );
    }
    let gate_on = placed("gate");
    if enabled("gate") && enabled("proxy") && gate_on.len() == 1 && gate_on != proxy_on {
        c.push(
            &placement(stack, "gate"),
            format!(
                "`host.gate` must run on the proxy's host `{}`, not on `{}`",
                proxy_on.join("`, `"),
                gate_on[0]
            ),
            Some(
                "the gate turns the funnel on from the proxy's health, probed on the same machine"
                    .into(),
            ),
        );
    }
    let bao = &stack.host.openbao;
    let bao_on = placed("openbao");
    if enabled("openbao")
        && bao_on.len() == 1
        && bao_on[0] != LOCAL_HOST
        && bao
            .listen
            .parse::<SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
    {
        c.push(
            &[K("host"), K("openbao"), K("listen")],
            format!(
                "`host.openbao` runs on `{}` but listens on its loopback address `{}`, which \
                 labctl (here) cannot reach to read secrets",
                bao_on[0], bao.listen
            ),
            Some(format!(
                "listen on an address of `{}` that this machine reaches",
                bao_on[0]
            )),
        );
    }
    // The proxy starts a pipeline's unit on its own manager.
    if enabled("proxy") {
        for (name, p) in &stack.host.proxy.pipelines {
            let elsewhere = stack.components().into_iter().find(|comp| {
                comp.plane == Plane::Systemd
                    && comp.unit.as_deref() == Some(p.unit.as_str())
                    && !comp.hosts.iter().any(|h| h == LOCAL_HOST)
            });
            if let Some(comp) = elsewhere {
                c.push(
                    &[K("host"), K("proxy"), K("pipelines"), K(name), K("unit")],
                    format!(
                        "pipeline `{name}` starts `{}.service`, which runs on {}, not on the \
                         proxy's host `local`",
                        p.unit,
                        comp.hosts
                            .iter()
                            .map(|h| format!("`{h}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Some("the proxy starts pipelines on its own host: place the unit there".into()),
                );
            }
        }
    }
}

/// Where a host component's `hosts` list is (or would be) written.
fn placement<'a>(stack: &Stack, name: &'a str) -> Vec<Seg<'a>> {
    if stack.host.extra.contains_key(name) {
        vec![K("host"), K("extra"), K(name), K("hosts")]
    } else {
        vec![K("host"), K(name), K("hosts")]
    }
}

/// Whether ssh would read `s` as a destination: not empty, not an option, no white space or
/// control character (ssh would split or mangle it).
fn destination(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("it is empty");
    }
    if s.starts_with('-') {
        return Err("it starts with `-`, which ssh reads as an option");
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it holds white space or a control character");
    }
    Ok(())
}
