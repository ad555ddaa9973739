//! `diff(desired, live) -> Plan`: pure, deterministic, and the only place actions are decided.

use std::collections::BTreeMap;

use serde_json::Value;

use super::units::{self, UnitState};
use super::{Action, Body, Change, Guard, Impact, Plan};
use crate::resource::{At, Content, Desired, DesiredObject, ResourceId, kind_spec};

/// One live object as a backend observed it (or as an older revision rendered it).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveObject {
    /// Its content, normalised the same way desired content is.
    pub content: Content,
    /// Whether it carries this stack's ownership (labels or unit marker).
    pub owned: bool,
    /// Units only: what systemd reports about it; none when not observed (`plan --base`).
    pub unit: Option<UnitState>,
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
                        unit: None,
                    },
                )
            })
            .collect();
        Live { objects }
    }
}

/// Stacks of at least this many objects are compared on every core.
const PARALLEL_DIFF_AT: usize = 256;

/// Compare desired with live and decide every action.
pub fn diff(desired: &Desired, live: &Live) -> Plan {
    // Objects compare independently: a large stack's are split over the cores.
    let wanted: Vec<_> = desired.objects.iter().collect();
    let mut changes = crate::par::map(wanted, PARALLEL_DIFF_AT, |(id, want)| {
        match live.objects.get(id) {
            None => created(want, desired),
            Some(have) => updated(want, have, desired),
        }
    });
    for (id, have) in &live.objects {
        if desired.objects.contains_key(id) || !have.owned {
            continue;
        }
        let mut impact = Vec::new();
        if matches!(id, ResourceId::Systemd { .. }) {
            impact = units::removed(have.unit.as_ref());
        }
        changes.push(Change {
            id: id.clone(),
            component: component_of(&have.content),
            action: Action::Delete,
            before: Some(Body::new(id, have.content.clone())),
            after: None,
            impact,
            notes: vec!["no longer rendered by the stack".into()],
            guards: Vec::new(),
            dry_run: None,
        });
    }
    changes.sort_by(|a, b| a.id.cmp(&b.id));
    Plan {
        changes,
        ..Plan::default()
    }
}

fn created(want: &DesiredObject, desired: &Desired) -> Change {
    Change {
        id: want.id.clone(),
        component: want.component.clone(),
        action: Action::Create,
        before: None,
        after: Some(Body::new(&want.id, want.content.clone())),
        impact: units::created(want, desired),
        notes: Vec::new(),
        guards: Vec::new(),
        dry_run: None,
    }
}

fn updated(want: &DesiredObject, have: &LiveObject, desired: &Desired) -> Change {
    let mut c = Change {
        id: want.id.clone(),
        component: want.component.clone(),
        action: Action::NoOp,
        before: None,
        after: None,
        impact: Vec::new(),
        notes: Vec::new(),
        guards: Vec::new(),
        dry_run: None,
    };
    let same = want.content == have.content;
    if let (Content::Unit(_), Content::Unit(before)) = (&want.content, &have.content) {
        let (impact, notes) = units::kept(want, before, have.unit.as_ref(), desired);
        c.impact = impact;
        c.notes = notes;
    }
    if !have.owned {
        c.action = Action::Adopt;
        c.notes.insert(
            0,
            "exists but is not managed by this stack: apply takes it over only with `--adopt`"
                .into(),
        );
        c.guards.push(Guard::Adopt);
    } else if !same || !c.impact.is_empty() {
        c.action = Action::Update;
    }
    if same && have.owned {
        // State-only drift (a stopped or disabled unit): no content to show.
        return c;
    }
    c.before = Some(Body::new(&want.id, have.content.clone()));
    c.after = Some(Body::new(&want.id, want.content.clone()));
    if let (Content::Kube(new), Content::Kube(old)) = (&want.content, &have.content) {
        if have.owned
            && let Some(why) = immutable_change(&want.id, old, new)
        {
            c.action = Action::Replace;
            c.notes.push(why.clone());
            c.guards.push(Guard::Replace { why });
        }
        if is_workload(&want.id) && old.at("/spec/template") != new.at("/spec/template") {
            c.impact.push(Impact::RollsPods);
        }
    }
    c
}

fn is_workload(id: &ResourceId) -> bool {
    id.kind().is_some_and(|k| kind_spec(k).rollout.is_some())
}

/// A field the API server refuses to change in place: the object must be replaced.
fn immutable_change(id: &ResourceId, old: &Value, new: &Value) -> Option<String> {
    let changed = |p: &str| old.pointer(p) != new.pointer(p);
    let kind = id.kind()?;
    let spec = kind_spec(kind);
    let hit: Vec<String> = spec
        .immutable
        .iter()
        .filter(|f| changed(f))
        .map(|f| f[1..].replace('/', "."))
        .collect();
    if spec.immutable_flag
        && old.at("/immutable").and_then(Value::as_bool) == Some(true)
        && (changed("/data") || changed("/binaryData") || changed("/stringData"))
    {
        return Some(format!(
            "`{kind}` is immutable: its data cannot change in place"
        ));
    }
    (!hit.is_empty()).then(|| format!("`{}` cannot change in place", hit.join("`, `")))
}

fn component_of(content: &Content) -> String {
    content
        .as_kube()
        .and_then(|v| {
            v.at("/metadata/labels")
                .and_then(|l| l.get(crate::resource::COMPONENT))
        })
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(unit: &str, text: &str) -> Desired {
        let mut d = Desired::default();
        let id = ResourceId::unit(None, unit);
        d.objects.insert(
            id.clone(),
            DesiredObject {
                id,
                component: "c".into(),
                template: "t".into(),
                content: Content::unit(text),
                reload_on_change: false,
            },
        );
        d
    }

    fn live(unit: &str, text: &str, owned: bool, state: Option<UnitState>) -> Live {
        let mut l = Live::default();
        l.objects.insert(
            ResourceId::unit(None, unit),
            LiveObject {
                content: Content::unit(text),
                owned,
                unit: state,
            },
        );
        l
    }

    const SVC: &str = "# marker\n[Service]\nExecStart=/bin/sleep 1\n";

    #[test]
    fn a_foreign_unit_is_adopted_never_updated() {
        let plan = diff(
            &desired("a.service", SVC),
            &live("a.service", "[Service]\n", false, None),
        );
        let c = &plan.changes[0];
        assert_eq!(c.action, Action::Adopt);
        assert!(c.notes[0].contains("--adopt"), "{:?}", c.notes);
        assert_eq!(c.guards, vec![Guard::Adopt]);
        assert!(c.before.is_some() && c.after.is_some());
    }

    #[test]
    fn state_drift_alone_is_an_update_without_content() {
        let stopped = UnitState {
            active_state: "inactive".into(),
            ..UnitState::default()
        };
        let plan = diff(
            &desired("a.service", SVC),
            &live("a.service", SVC, true, Some(stopped)),
        );
        let c = &plan.changes[0];
        assert_eq!(
            (c.action, c.impact.as_slice()),
            (Action::Update, &[Impact::Start][..])
        );
        assert!(c.before.is_none() && c.after.is_none());
        assert!(!plan.is_empty());
    }

    #[test]
    fn an_owned_unit_no_longer_rendered_is_removed() {
        let running = UnitState {
            active_state: "active".into(),
            unit_file_state: "enabled".into(),
            ..UnitState::default()
        };
        let plan = diff(
            &Desired::default(),
            &live("old.service", SVC, true, Some(running)),
        );
        assert_eq!(plan.changes[0].action, Action::Delete);
        assert_eq!(plan.changes[0].impact, vec![Impact::Stop, Impact::Disable]);
        let foreign = diff(&Desired::default(), &live("old.service", SVC, false, None));
        assert!(
            foreign.changes.is_empty(),
            "never pruned without the marker"
        );
    }
}
