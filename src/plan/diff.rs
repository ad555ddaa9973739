//! `diff(desired, live) -> Plan`: pure, deterministic, and the only place actions are decided.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Action, Change, Impact, Plan, redact_secret};
use crate::resource::{Content, Desired, DesiredObject, ResourceId};

/// One live object as a backend observed it (or as an older revision rendered it).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveObject {
    /// Its content, normalised the same way desired content is.
    pub content: Content,
    /// Whether it carries this stack's ownership (labels or unit marker).
    pub owned: bool,
}

/// Everything observed, by id.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// Objects by id.
    pub objects: BTreeMap<ResourceId, LiveObject>,
}

impl Live {
    /// The desired set of an older revision, taken as the live world (`plan --base`).
    pub fn from_desired(d: &Desired) -> Self {
        let objects = d
            .objects
            .iter()
            .map(|(id, o)| {
                (
                    id.clone(),
                    LiveObject {
                        content: o.content.clone(),
                        owned: true,
                    },
                )
            })
            .collect();
        Live { objects }
    }
}

/// Compare desired with live and decide every action.
pub fn diff(desired: &Desired, live: &Live) -> Plan {
    let mut changes = Vec::new();
    for (id, want) in &desired.objects {
        let have = live.objects.get(id);
        changes.push(match have {
            None => created(want, desired),
            Some(have) => updated(want, have),
        });
    }
    for (id, have) in &live.objects {
        if desired.objects.contains_key(id) || !have.owned {
            continue;
        }
        let mut impact = Vec::new();
        if matches!(id, ResourceId::Systemd { .. }) {
            impact = vec![Impact::Stop, Impact::Disable];
        }
        changes.push(Change {
            id: id.clone(),
            component: component_of(&have.content),
            action: Action::Delete,
            before: Some(shown(id, &have.content, None)),
            after: None,
            impact,
            notes: vec!["no longer rendered by the stack".into()],
        });
    }
    changes.sort_by(|a, b| a.id.cmp(&b.id));
    Plan { changes }
}

fn created(want: &DesiredObject, desired: &Desired) -> Change {
    let impact = match (&want.id, &want.content) {
        (ResourceId::Systemd { unit }, Content::Unit(text)) => {
            let mut i = Vec::new();
            if has_install(text) {
                i.push(Impact::Enable);
            }
            if !triggered_by_timer(unit, desired) {
                i.push(Impact::Start);
            }
            i
        }
        _ => Vec::new(),
    };
    Change {
        id: want.id.clone(),
        component: want.component.clone(),
        action: Action::Create,
        before: None,
        after: Some(shown(&want.id, &want.content, None)),
        impact,
        notes: Vec::new(),
    }
}

fn updated(want: &DesiredObject, have: &LiveObject) -> Change {
    let mut c = Change {
        id: want.id.clone(),
        component: want.component.clone(),
        action: Action::NoOp,
        before: None,
        after: None,
        impact: Vec::new(),
        notes: Vec::new(),
    };
    if !have.owned {
        c.notes.push(
            "exists but is not managed by this stack: apply takes it over only with `--adopt`"
                .into(),
        );
    }
    if want.content == have.content && have.owned {
        return c;
    }
    c.before = Some(shown(&want.id, &have.content, None));
    c.after = Some(shown(&want.id, &want.content, Some(&have.content)));
    c.action = if have.owned {
        Action::Update
    } else {
        Action::Adopt
    };
    match (&want.content, &have.content) {
        (Content::Kube(new), Content::Kube(old)) => {
            if have.owned
                && let Some(why) = immutable_change(&want.id, old, new)
            {
                c.action = Action::Replace;
                c.notes.push(why);
            }
            if is_workload(&want.id)
                && old.pointer("/spec/template") != new.pointer("/spec/template")
            {
                c.impact.push(Impact::RollsPods);
            }
        }
        (Content::Unit(_), Content::Unit(_)) => {
            c.impact.push(if want.reload_on_change {
                Impact::Reload
            } else {
                Impact::Restart
            });
        }
        _ => {}
    }
    c
}

fn is_workload(id: &ResourceId) -> bool {
    matches!(id.kind(), Some("Deployment" | "StatefulSet" | "DaemonSet"))
}

/// A field the API server refuses to change in place: the object must be replaced.
fn immutable_change(id: &ResourceId, old: &Value, new: &Value) -> Option<String> {
    let changed = |p: &str| old.pointer(p) != new.pointer(p);
    let kind = id.kind()?;
    let fields: &[&str] = match kind {
        "Deployment" | "DaemonSet" => &["/spec/selector"],
        "StatefulSet" => &[
            "/spec/selector",
            "/spec/volumeClaimTemplates",
            "/spec/serviceName",
            "/spec/podManagementPolicy",
        ],
        "Service" => &["/spec/clusterIP"],
        "PersistentVolumeClaim" => &[
            "/spec/storageClassName",
            "/spec/accessModes",
            "/spec/volumeMode",
        ],
        "Job" => &["/spec/selector", "/spec/template"],
        _ => &[],
    };
    let hit: Vec<String> = fields
        .iter()
        .filter(|f| changed(f))
        .map(|f| f[1..].replace('/', "."))
        .collect();
    if let ("ConfigMap" | "Secret", Some(true)) =
        (kind, old.pointer("/immutable").and_then(Value::as_bool))
        && (changed("/data") || changed("/binaryData") || changed("/stringData"))
    {
        return Some(format!(
            "`{kind}` is immutable: its data cannot change in place"
        ));
    }
    (!hit.is_empty()).then(|| format!("`{}` cannot change in place", hit.join("`, `")))
}

fn has_install(text: &str) -> bool {
    text.lines().any(|l| l.trim() == "[Install]")
}

/// A service with a sibling timer is started by the timer, not by apply.
fn triggered_by_timer(unit: &str, desired: &Desired) -> bool {
    let Some(base) = unit.strip_suffix(".service") else {
        return false;
    };
    desired.objects.contains_key(&ResourceId::Systemd {
        unit: format!("{base}.timer"),
    })
}

fn component_of(content: &Content) -> String {
    content
        .as_kube()
        .and_then(|v| {
            v.pointer("/metadata/labels")
                .and_then(|l| l.get(crate::resource::COMPONENT))
        })
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The text a plan may show: Secret values are replaced before they ever enter the plan.
fn shown(id: &ResourceId, content: &Content, before: Option<&Content>) -> String {
    if id.kind() == Some("Secret")
        && let Content::Kube(v) = content
    {
        return crate::resource::to_yaml(&redact_secret(v, before.and_then(Content::as_kube)));
    }
    content.text()
}
