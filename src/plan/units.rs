//! Unit-state planning: which of start, restart, reload, stop, enable and disable a unit needs,
//! decided from its desired text and what systemd reported. Pure: the backend observes, this
//! decides.
//!
//! The rules follow NixOS's switch-to-configuration: a unit restarts only when its effective
//! content changed; a unit activated by a timer, socket or path unit is left to its trigger; a
//! `Type=oneshot` service without `RemainAfterExit=` is never demanded active (it would never
//! converge: it is inactive again as soon as it has run).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{Value, json};

use super::{Action, Impact, Live, LiveObject, Plan};
use crate::error::Error;
pub use crate::observed::{ObservedUnit, UnitState};
use crate::render::sha256_hex;
use crate::resource::{Content, Desired, DesiredObject, ResourceId, unit_owner};
use crate::stack::Scope;

/// The units to observe on `host` (`None`: this machine): every unit desired there, and every
/// file in its unit folder that carries `stack`'s marker (what the stack owns, for pruning).
pub fn units_to_observe(
    stack: &str,
    host: Option<&str>,
    desired: &Desired,
    files: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut names: BTreeSet<String> = desired
        .objects
        .keys()
        .filter_map(|id| match id {
            ResourceId::Systemd { host: h, unit } if h.as_deref() == host => Some(unit.clone()),
            ResourceId::Systemd { .. } | ResourceId::Kube { .. } | ResourceId::EnvFile { .. } => {
                None
            }
        })
        .collect();
    names.extend(
        files
            .iter()
            .filter(|(_, t)| unit_owner(t) == Some(stack))
            .map(|(n, _)| n.clone()),
    );
    names.into_iter().collect()
}

/// The live set of `host` (`None`: this machine): each observed unit that has a file, with the
/// file's text, its state, and whether `stack`'s marker is on it. A unit loaded from another
/// folder is live too: a same-named unit that labctl must not silently shadow.
pub fn live_units(
    stack: &str,
    host: Option<&str>,
    files: &BTreeMap<String, String>,
    observed: Vec<ObservedUnit>,
) -> Live {
    let mut live = Live::default();
    for o in observed {
        let text = match files.get(&o.name) {
            Some(t) => Some(t.clone()),
            None if o.state.load_state != "not-found" => o.loaded_elsewhere,
            None => None,
        };
        if let Some(text) = text {
            live.objects.insert(
                ResourceId::unit(host, o.name),
                LiveObject {
                    content: Content::unit(&text),
                    owned: unit_owner(&text) == Some(stack),
                    unit: Some(o.state),
                },
            );
        }
    }
    live
}

/// The value of `key=` in `[section]` (the last one wins, as in systemd).
fn setting<'a>(text: &'a str, section: &str, key: &str) -> Option<&'a str> {
    let mut inside = false;
    let mut found = None;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            inside = l == format!("[{section}]");
        } else if inside
            && let Some((k, v)) = l.split_once('=')
            && k.trim() == key
        {
            found = Some(v.trim());
        }
    }
    found
}

/// The `[Install]` section's settings, for telling whether enabling must be redone.
fn install_section(text: &str) -> Vec<&str> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            inside = l == "[Install]";
        } else if inside && !l.is_empty() && !l.starts_with('#') && !l.starts_with(';') {
            out.push(l);
        }
    }
    out
}

/// Whether enabling the unit creates anything: an `[Install]` section naming a target or alias.
pub fn installable(text: &str) -> bool {
    install_section(text).iter().any(|l| {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        matches!(k.trim(), "WantedBy" | "RequiredBy" | "UpheldBy" | "Alias") && !v.trim().is_empty()
    })
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "yes" | "true" | "on" | "1")
}

/// The unit that a timer, socket or path unit activates, if `trigger` is one.
fn triggered_unit(trigger: &str, text: &str) -> Option<String> {
    let (base, suffix) = trigger.rsplit_once('.')?;
    let section = match suffix {
        "timer" => "Timer",
        "path" => "Path",
        "socket" => "Socket",
        _ => return None,
    };
    if let Some(u) = setting(text, section, "Service").or_else(|| setting(text, section, "Unit")) {
        return Some(u.to_string());
    }
    if suffix == "socket" && setting(text, "Socket", "Accept").is_some_and(truthy) {
        // Accept=yes spawns `base@.service` instances per connection: nothing to start.
        return Some(format!("{base}@.service"));
    }
    Some(format!("{base}.service"))
}

/// Whether some timer, socket or path unit desired on `host` activates `unit` there.
fn has_trigger(host: Option<&str>, unit: &str, desired: &Desired) -> bool {
    desired.objects.values().any(|o| match &o.id {
        ResourceId::Systemd { host: h, unit: t } if h.as_deref() == host => {
            triggered_unit(t, &o.content.text()).is_some_and(|u| u == unit)
        }
        ResourceId::Systemd { .. } => false,
        ResourceId::Kube { .. } | ResourceId::EnvFile { .. } => false,
    })
}

/// Whether apply should keep `unit` (on `host`; `None`: this machine) running.
pub fn wants_active(host: Option<&str>, unit: &str, text: &str, desired: &Desired) -> bool {
    if unit.contains("@.") || has_trigger(host, unit, desired) {
        return false;
    }
    if unit.ends_with(".service")
        && setting(text, "Service", "Type") == Some("oneshot")
        && !setting(text, "Service", "RemainAfterExit").is_some_and(truthy)
    {
        return false;
    }
    true
}

/// Impacts of creating a unit.
pub(super) fn created(want: &DesiredObject, desired: &Desired) -> Vec<Impact> {
    let ResourceId::Systemd { host, unit } = &want.id else {
        return Vec::new();
    };
    let text = want.content.text();
    let mut i = Vec::new();
    if installable(&text) {
        i.push(Impact::Enable);
    }
    if wants_active(host.as_deref(), unit, &text, desired) {
        i.push(Impact::Start);
    }
    i
}

/// Impacts (and notes that explain them) of keeping a unit: its content may have changed, and its
/// state may have drifted from what the stack wants.
pub(super) fn kept(
    want: &DesiredObject,
    before: &str,
    state: Option<&UnitState>,
    desired: &Desired,
) -> (Vec<Impact>, Vec<String>) {
    let ResourceId::Systemd { host, unit } = &want.id else {
        return (Vec::new(), Vec::new());
    };
    let text = want.content.text();
    let changed = before != text;
    let restart = if want.reload_on_change {
        Impact::Reload
    } else {
        Impact::Restart
    };
    let active = wants_active(host.as_deref(), unit, &text, desired);
    let mut impact = Vec::new();
    let mut notes = Vec::new();
    let Some(st) = state else {
        // No live state (a plan against a git revision): the content decides alone.
        if changed && active {
            impact.push(restart);
        }
        return (impact, notes);
    };
    if !st.drop_in_paths.is_empty() {
        notes.push(format!(
            "drop-ins change the effective unit: {}",
            st.drop_in_paths.join(", ")
        ));
    }
    if st.is_masked() {
        notes.push("is masked: labctl never unmasks a unit".into());
        return (impact, notes);
    }
    if st.need_daemon_reload && !changed {
        notes.push("systemd has not loaded the current file (NeedDaemonReload)".into());
        impact.push(Impact::DaemonReload);
    }
    if installable(&text) {
        if !st.is_enabled() {
            if !changed || installable(before) {
                notes.push(format!(
                    "is {} but the stack enables it",
                    or_unknown(&st.unit_file_state)
                ));
            }
            impact.push(Impact::Enable);
        } else if changed && install_section(before) != install_section(&text) {
            notes.push("its [Install] section changed: it is re-enabled".into());
            impact.extend([Impact::Disable, Impact::Enable]);
        }
    } else if st.is_enabled() {
        notes.push("is enabled but has no [Install] section any more".into());
        impact.push(Impact::Disable);
    }
    if active {
        if !st.is_running() {
            notes.push(format!(
                "is {} ({}) but the stack runs it",
                or_unknown(&st.active_state),
                or_unknown(&st.sub_state)
            ));
            impact.push(Impact::Start);
        } else if changed || st.need_daemon_reload {
            impact.push(restart);
        } else if st.restart_owed {
            notes.push(format!(
                "an earlier apply stopped before it was {}: it still runs its old content",
                if restart == Impact::Reload {
                    "reloaded"
                } else {
                    "restarted"
                }
            ));
            impact.push(restart);
        }
    } else if changed && st.is_running() {
        notes.push("is running now: the change applies when it next starts".into());
    }
    (impact, notes)
}

/// Impacts of removing a unit this stack owns but no longer renders.
pub(super) fn removed(state: Option<&UnitState>) -> Vec<Impact> {
    match state {
        None => vec![Impact::Stop, Impact::Disable],
        Some(st) => {
            let mut i = Vec::new();
            if st.active_state != "inactive" && st.active_state != "failed" {
                i.push(Impact::Stop);
            }
            if st.is_enabled() {
                i.push(Impact::Disable);
            }
            i
        }
    }
}

/// Where an env file named in `EnvironmentFile=` is, for the manager of `scope`: `%E` is
/// `/etc` for the system manager and `$XDG_CONFIG_HOME` (`~/.config`) for a user's; `%h` is
/// the home folder; `%%` is `%`.
///
/// # Errors
/// [`Error::Usage`] for another specifier, or when the user's folders are unknown (neither
/// `XDG_CONFIG_HOME` nor `HOME` is set).
pub fn env_file_path(path: &str, scope: Scope) -> Result<PathBuf, Error> {
    env_file_path_on(path, scope, &|k| std::env::var(k).ok())
}

/// [`env_file_path`] on a machine whose manager's user has the variables `var` gives (another
/// host's, as its probe found them).
///
/// # Errors
/// As [`env_file_path`].
pub fn env_file_path_on(
    path: &str,
    scope: Scope,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, Error> {
    let env = |k: &str| var(k).filter(|v| !v.is_empty());
    let home = || {
        env("HOME").ok_or_else(|| {
            Error::Usage(format!("cannot place env file `{path}`: `HOME` is not set"))
        })
    };
    let mut out = String::new();
    let mut chars = path.chars();
    while let Some(ch) = chars.next() {
        if ch != '%' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('E') => match scope {
                Scope::System => out.push_str("/etc"),
                Scope::User => match env("XDG_CONFIG_HOME") {
                    Some(c) => out.push_str(&c),
                    None => out.push_str(&format!("{}/.config", home()?)),
                },
            },
            Some('h') => match scope {
                Scope::System => out.push_str("/root"),
                Scope::User => out.push_str(&home()?),
            },
            other => {
                return Err(Error::Usage(format!(
                    "cannot place env file `{path}`: labctl expands only `%E`, `%h` and `%%`, not `%{}`",
                    other.map(String::from).unwrap_or_default()
                )));
            }
        }
    }
    Ok(PathBuf::from(out))
}

/// The variables of an env file's text, as systemd reads them (comments and blank lines
/// skipped; single quotes literal; double quotes with `\` escapes; unquoted values trimmed). A
/// quoted value may span lines, as systemd allows (a private key).
fn env_file_vars(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (line, after) = rest.split_once('\n').unwrap_or((rest, ""));
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            rest = after;
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            rest = after;
            continue;
        };
        // The value starts in this line and, quoted, may go on past its end.
        let v_start = &rest[line.len() - l.len() + k.len() + 1..];
        let v_trimmed = v_start.trim_start_matches([' ', '\t']);
        let (value, next) = match v_trimmed.chars().next() {
            Some('\'') => match v_trimmed[1..].find('\'') {
                Some(end) => (
                    v_trimmed[1..1 + end].to_string(),
                    line_after(&v_trimmed[2 + end..]),
                ),
                None => (v.trim().to_string(), after),
            },
            Some('"') => {
                let mut s = String::new();
                let mut it = v_trimmed[1..].char_indices();
                let mut closed = None;
                while let Some((i, ch)) = it.next() {
                    match ch {
                        '\\' => {
                            if let Some((_, next)) = it.next() {
                                if !matches!(next, '\\' | '"' | '`' | '$' | '\n') {
                                    s.push('\\');
                                }
                                if next != '\n' {
                                    s.push(next);
                                }
                            }
                        }
                        '"' => {
                            closed = Some(i);
                            break;
                        }
                        c => s.push(c),
                    }
                }
                match closed {
                    Some(i) => (s, line_after(&v_trimmed[2 + i..])),
                    None => (v.trim().to_string(), after),
                }
            }
            _ => (v.trim().to_string(), after),
        };
        out.insert(k.trim().to_string(), value);
        rest = next;
    }
    out
}

/// What follows the end of the line `text` is in.
fn line_after(text: &str) -> &str {
    text.split_once('\n').map_or("", |(_, after)| after)
}

/// The live side of an env file: its variables and its text's hash, compared with what the
/// stack wants by hash only. A live value whose hash equals the wanted one's is held as the
/// wanted value (so that the two compare equal); any other live value is held as its hash,
/// never as itself. Ownership is labctl's marker on the first line.
pub fn live_env_file(stack: &str, want: &Content, text: &str) -> LiveObject {
    let wanted: BTreeMap<String, String> = want
        .as_kube()
        .and_then(|v| v.get("env"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let env: serde_json::Map<String, Value> = env_file_vars(text)
        .into_iter()
        .map(|(k, v)| {
            let h = sha256_hex(v.as_bytes());
            let shown = match wanted.get(&k) {
                Some(w) if sha256_hex(w.as_bytes()) == h => w.clone(),
                _ => format!("sha256:{h}"),
            };
            (k, json!(shown))
        })
        .collect();
    LiveObject {
        content: Content::kube(json!({"env": env, "sha256": sha256_hex(text.as_bytes())})),
        owned: unit_owner(text) == Some(stack),
        unit: None,
    }
}

/// Env files restart their unit when they change, unless the unit restarts or starts anyway
/// (apply writes env files before any unit job). A unit that is not kept running (a oneshot, a
/// timer's service) reads the new file the next time it starts.
pub fn env_file_impacts(plan: &mut Plan, desired: &Desired) {
    let restarting: BTreeSet<ResourceId> = plan
        .changes
        .iter()
        .filter(|c| c.impact.contains(&Impact::Start) || c.impact.contains(&Impact::Restart))
        .filter(|c| matches!(c.id, ResourceId::Systemd { .. }))
        .map(|c| c.id.clone())
        .collect();
    for c in &mut plan.changes {
        let ResourceId::EnvFile { host, unit, .. } = &c.id else {
            continue;
        };
        let id = ResourceId::unit(host.as_deref(), unit.clone());
        if c.action == Action::NoOp || c.action == Action::Delete || restarting.contains(&id) {
            continue;
        }
        let Some(u) = desired.objects.get(&id) else {
            continue;
        };
        if wants_active(host.as_deref(), unit, &u.content.text(), desired) {
            c.impact.push(Impact::Restart);
        }
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "unknown" } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Content;

    fn obj(unit: &str, text: &str, reload: bool) -> DesiredObject {
        DesiredObject {
            id: ResourceId::unit(None, unit),
            component: "c".into(),
            template: "t".into(),
            content: Content::unit(text),
            reload_on_change: reload,
        }
    }

    fn desired(objs: &[&DesiredObject]) -> Desired {
        let mut d = Desired::default();
        for o in objs {
            d.objects.insert(o.id.clone(), (*o).clone());
        }
        d
    }

    fn running() -> UnitState {
        UnitState {
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            unit_file_state: "enabled".into(),
            ..UnitState::default()
        }
    }

    const SVC: &str = "[Service]\nExecStart=/bin/sleep 1000\n[Install]\nWantedBy=default.target\n";

    #[test]
    fn timer_is_started_and_its_service_is_not() {
        let t = obj(
            "sync.timer",
            "[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n",
            false,
        );
        let s = obj(
            "sync.service",
            "[Service]\nType=oneshot\nExecStart=/bin/true\n",
            false,
        );
        let d = desired(&[&t, &s]);
        assert_eq!(created(&t, &d), vec![Impact::Enable, Impact::Start]);
        assert_eq!(created(&s, &d), Vec::<Impact>::new());
    }

    #[test]
    fn timer_unit_setting_names_its_service() {
        let t = obj(
            "a.timer",
            "[Timer]\nOnCalendar=daily\nUnit=b.service\n",
            false,
        );
        let s = obj("b.service", "[Service]\nExecStart=/bin/sleep 1\n", false);
        assert!(!wants_active(
            None,
            "b.service",
            &s.content.text(),
            &desired(&[&t, &s])
        ));
    }

    #[test]
    fn oneshot_without_remain_after_exit_is_not_demanded() {
        let d = Desired::default();
        assert!(!wants_active(
            None,
            "x.service",
            "[Service]\nType=oneshot\nExecStart=/bin/true\n",
            &d
        ));
        assert!(wants_active(
            None,
            "x.service",
            "[Service]\nType=oneshot\nRemainAfterExit=yes\n",
            &d
        ));
    }

    #[test]
    fn change_restarts_or_reloads() {
        let before = Content::unit(SVC).text();
        let after = obj("a.service", &SVC.replace("1000", "2000"), false);
        let d = desired(&[&after]);
        assert_eq!(
            kept(&after, &before, Some(&running()), &d).0,
            vec![Impact::Restart]
        );
        let after = obj("a.service", &SVC.replace("1000", "2000"), true);
        assert_eq!(
            kept(&after, &before, Some(&running()), &d).0,
            vec![Impact::Reload]
        );
    }

    #[test]
    fn drift_is_repaired() {
        let want = obj("a.service", SVC, false);
        let text = want.content.text();
        let d = desired(&[&want]);
        let stopped = UnitState {
            active_state: "inactive".into(),
            sub_state: "dead".into(),
            ..running()
        };
        assert_eq!(
            kept(&want, &text, Some(&stopped), &d).0,
            vec![Impact::Start]
        );
        let disabled = UnitState {
            unit_file_state: "disabled".into(),
            ..running()
        };
        assert_eq!(
            kept(&want, &text, Some(&disabled), &d).0,
            vec![Impact::Enable]
        );
        let stale = UnitState {
            need_daemon_reload: true,
            ..running()
        };
        assert_eq!(
            kept(&want, &text, Some(&stale), &d).0,
            vec![Impact::DaemonReload, Impact::Restart]
        );
        // Its files match, but an apply was killed before restarting it.
        let owed = UnitState {
            restart_owed: true,
            ..running()
        };
        let (impact, notes) = kept(&want, &text, Some(&owed), &d);
        assert_eq!(impact, vec![Impact::Restart]);
        assert!(notes[0].contains("still runs its old content"), "{notes:?}");
        assert_eq!(kept(&want, &text, Some(&running()), &d), (vec![], vec![]));
    }

    #[test]
    fn install_change_re_enables() {
        let want = obj(
            "a.service",
            &SVC.replace("default.target", "other.target"),
            false,
        );
        let (i, _) = kept(
            &want,
            &Content::unit(SVC).text(),
            Some(&running()),
            &desired(&[&want]),
        );
        assert_eq!(i, vec![Impact::Disable, Impact::Enable, Impact::Restart]);
    }

    #[test]
    fn removal_stops_and_disables_only_what_is_needed() {
        assert_eq!(
            removed(Some(&running())),
            vec![Impact::Stop, Impact::Disable]
        );
        let dead = UnitState {
            active_state: "inactive".into(),
            unit_file_state: "static".into(),
            ..running()
        };
        assert_eq!(removed(Some(&dead)), Vec::<Impact>::new());
    }

    #[test]
    fn env_file_text_reads_back_as_written_and_compares_by_hash() {
        let vars: BTreeMap<String, String> = [
            ("A", "plain"),
            ("B", "it's \"quoted\" $HOME `x` \\n"),
            ("C", "with spaces  "),
            (
                "KEY",
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----\n",
            ),
            ("MULTI", "it's\ntwo lines"),
            ("Z", "after"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let text = crate::render::env_file_text("lab", &vars);
        assert_eq!(env_file_vars(&text), vars);
        let want = crate::render::env_file_content("lab", &vars);
        let same = live_env_file("lab", &want, &text);
        assert!(same.owned);
        assert_eq!(same.content, want);
        let other = text.replace("plain", "other");
        let changed = live_env_file("lab", &want, &other);
        let env = &changed.content.as_kube().unwrap()["env"];
        assert!(env["A"].as_str().unwrap().starts_with("sha256:"), "{env}");
        assert_eq!(env["C"], "with spaces  ");
        assert!(!changed.content.text().contains("other"));
        assert!(!live_env_file("other-stack", &want, &text).owned);
    }

    #[test]
    fn env_paths_expand_for_the_manager() {
        assert_eq!(
            env_file_path("%E/labctl/x.env", Scope::System).unwrap(),
            PathBuf::from("/etc/labctl/x.env")
        );
        assert!(
            env_file_path("%t/x.env", Scope::System)
                .unwrap_err()
                .to_string()
                .contains("`%t`")
        );
    }
}
