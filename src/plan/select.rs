//! `--target` / `--exclude`: a pure function cutting a [`Plan`] down to the resources asked for,
//! as Terraform's resource targeting does.
//!
//! Patterns are globs on the ids the plan prints (`Deployment homelab/*`, `unit labctl-*`). A
//! targeted change brings along what it depends on by ordering (apply must make those first), and
//! each such change says why it is there. An excluded change takes along what depends on it, for
//! the same reason. The plan records the selection ([`Plan::targeting`]) so that every view says
//! it is partial.

use std::collections::BTreeSet;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::{Action, Change, Plan, Targeting};
use crate::error::Error;
use crate::resource::{Content, ResourceId};
use crate::stack::Plane;

/// What the command line asked for: `--target` and `--exclude` patterns, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `--target` patterns: when any, only matching changes (and what they depend on) stay.
    pub targets: Vec<String>,
    /// `--exclude` patterns: matching changes (and what depends on them) go.
    pub excludes: Vec<String>,
}

impl Selection {
    /// Whether nothing is selected: the plan stays whole.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty() && self.excludes.is_empty()
    }
}

fn globs(flag: &str, patterns: &[String]) -> Result<GlobSet, Error> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = Glob::new(p)
            .map_err(|e| Error::Usage(format!("`{flag} {p}` is not a valid pattern: {e}")))?;
        b.add(g);
    }
    b.build()
        .map_err(|e| Error::Usage(format!("`{flag}` patterns: {e}")))
}

/// Cut `plan` down to `selection`: every change whose id matches a `--target` pattern, plus (over
/// and over) what those depend on by ordering; minus every change matching an `--exclude`
/// pattern, plus (over and over) what depends on those. The plan's preconditions are kept for
/// the changes that stay. An empty selection returns the plan unchanged.
///
/// # Errors
/// [`Error::Usage`] for a pattern that is not a glob, or one that matches no id in the plan (a
/// typo would otherwise plan nothing and say nothing).
pub fn select(mut plan: Plan, selection: &Selection) -> Result<Plan, Error> {
    if selection.is_empty() {
        return Ok(plan);
    }
    let targets = globs("--target", &selection.targets)?;
    let excludes = globs("--exclude", &selection.excludes)?;
    let names: Vec<String> = plan.changes.iter().map(|c| c.id.to_string()).collect();
    for (flag, patterns) in [
        ("--target", &selection.targets),
        ("--exclude", &selection.excludes),
    ] {
        for p in patterns {
            let one = globs(flag, std::slice::from_ref(p))?;
            if !names.iter().any(|n| one.is_match(n)) {
                return Err(Error::Usage(format!(
                    "`{flag} {p}` matches nothing in the plan of stack `{}` (ids look like \
                     `Deployment namespace/name` and `unit name.service`)",
                    plan.stack
                )));
            }
        }
    }
    let n = plan.changes.len();
    let Cut {
        deps,
        keep,
        matched,
        gone,
    } = cut(&plan.changes, &names, selection, &targets, &excludes);
    let pulled_in: BTreeSet<usize> = keep.difference(&matched).copied().collect();
    let explicitly_excluded: BTreeSet<usize> =
        (0..n).filter(|&i| excludes.is_match(&names[i])).collect();
    let mut dependencies = Vec::new();
    let mut dependents_excluded = Vec::new();
    let mut kept = Vec::new();
    let mut left_out = 0;
    for (i, mut c) in std::mem::take(&mut plan.changes).into_iter().enumerate() {
        if !keep.contains(&i) || gone.contains(&i) {
            if c.action != Action::NoOp {
                left_out += 1;
            }
            if gone.contains(&i) && !explicitly_excluded.contains(&i) && keep.contains(&i) {
                dependents_excluded.push(c.id.clone());
            }
            continue;
        }
        if pulled_in.contains(&i) {
            let by: Vec<String> = (0..n)
                .filter(|j| keep.contains(j) && deps[*j].contains(&i))
                .map(|j| format!("`{}`", names[j]))
                .collect();
            c.notes.push(format!(
                "included although not targeted: applied before {}, which depends on it",
                by.join(", ")
            ));
            dependencies.push(c.id.clone());
        }
        kept.push(c);
    }
    let ids: BTreeSet<&ResourceId> = kept.iter().map(|c| &c.id).collect();
    plan.preconditions.retain(|id, _| ids.contains(id));
    plan.changes = kept;
    // A partial apply records in the stack's inventory only what it adds: kinds it leaves out
    // stay recorded (a later full plan still prunes by them), and a cut without a kube change
    // writes no inventory at all (its namespace may not even exist yet).
    if let Some(inv) = plan.inventory.take()
        && plan
            .changes
            .iter()
            .any(|c| c.id.plane() == Plane::Kube && c.action != Action::NoOp)
    {
        let added = super::kube::Inventory::after(&plan);
        let wanted = match &inv.stored {
            Some(stored) => stored.union(&added),
            None => added,
        };
        plan.inventory = Some(super::kube::InventoryPlan { wanted, ..inv });
    }
    if !dependents_excluded.is_empty() {
        plan.warnings.push(format!(
            "excluded as well, as they depend on an excluded resource: {}",
            dependents_excluded
                .iter()
                .map(|id| format!("`{id}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    plan.targeting = Some(Targeting {
        targets: selection.targets.clone(),
        excludes: selection.excludes.clone(),
        dependencies,
        left_out,
    });
    Ok(plan)
}

/// What a selection does to a list of changes (indexes into it).
struct Cut {
    /// What each change depends on.
    deps: Vec<BTreeSet<usize>>,
    /// Targeted (all, without targets) and what they depend on.
    keep: BTreeSet<usize>,
    /// Targeted.
    matched: BTreeSet<usize>,
    /// Excluded and what depends on them.
    gone: BTreeSet<usize>,
}

fn cut(
    changes: &[Change],
    names: &[String],
    selection: &Selection,
    targets: &GlobSet,
    excludes: &GlobSet,
) -> Cut {
    let n = changes.len();
    let deps: Vec<BTreeSet<usize>> = (0..n).map(|i| depends_on(changes, i)).collect();
    let mut keep: BTreeSet<usize> = if selection.targets.is_empty() {
        (0..n).collect()
    } else {
        (0..n).filter(|&i| targets.is_match(&names[i])).collect()
    };
    let matched = keep.clone();
    // What a kept change depends on comes along.
    let mut pending: Vec<usize> = keep.iter().copied().collect();
    while let Some(i) = pending.pop() {
        for &d in &deps[i] {
            if keep.insert(d) {
                pending.push(d);
            }
        }
    }
    // An excluded change takes what depends on it along.
    let mut gone: BTreeSet<usize> = (0..n).filter(|&i| excludes.is_match(&names[i])).collect();
    loop {
        let more: Vec<usize> = (0..n)
            .filter(|i| !gone.contains(i) && deps[*i].iter().any(|d| gone.contains(d)))
            .collect();
        if more.is_empty() {
            break;
        }
        gone.extend(more);
    }
    Cut {
        deps,
        keep,
        matched,
        gone,
    }
}

/// The ids of `plan` that `selection` keeps, as [`select`] would keep them, without requiring
/// each pattern to match: on a plan of the desired objects alone (no deletions), this is what a
/// selection needs rendered with values, so the ops layer reads only their secrets.
///
/// # Errors
/// [`Error::Usage`] for a pattern that is not a glob.
pub fn kept_ids(plan: &Plan, selection: &Selection) -> Result<BTreeSet<ResourceId>, Error> {
    let targets = globs("--target", &selection.targets)?;
    let excludes = globs("--exclude", &selection.excludes)?;
    let names: Vec<String> = plan.changes.iter().map(|c| c.id.to_string()).collect();
    let cut = cut(&plan.changes, &names, selection, &targets, &excludes);
    Ok(cut
        .keep
        .difference(&cut.gone)
        .map(|&i| plan.changes[i].id.clone())
        .collect())
}

/// The changes change `i` depends on by ordering (indexes into `changes`), for creations and
/// updates only: a deletion depends on nothing being made first.
///
/// - A namespaced kube object depends on its Namespace, and on the objects of its component in
///   the same namespace that apply makes before it (a lower apply tier: the ConfigMap a
///   Deployment mounts).
/// - A unit depends on the units it names in `Requires=`, `Wants=`, `BindsTo=`, `Requisite=` and
///   `After=`, and a timer, socket or path unit on the unit it activates.
fn depends_on(changes: &[Change], i: usize) -> BTreeSet<usize> {
    let c = &changes[i];
    let mut out = BTreeSet::new();
    if c.action == Action::Delete {
        return out;
    }
    match &c.id {
        ResourceId::Kube {
            namespace: Some(ns),
            kind,
            ..
        } => {
            let rank = super::kube::apply_rank(kind);
            for (j, o) in changes.iter().enumerate() {
                if j == i || o.action == Action::Delete {
                    continue;
                }
                let ResourceId::Kube {
                    namespace: ons,
                    kind: okind,
                    name: oname,
                    ..
                } = &o.id
                else {
                    continue;
                };
                let is_namespace = okind == "Namespace" && ons.is_none() && oname == ns;
                let before_it = ons.as_deref() == Some(ns.as_str())
                    && !c.component.is_empty()
                    && o.component == c.component
                    && super::kube::apply_rank(okind) < rank;
                if is_namespace || before_it {
                    out.insert(j);
                }
            }
        }
        ResourceId::Kube { .. } => {}
        ResourceId::Systemd { host, unit } => {
            let text = c
                .after
                .as_ref()
                .or(c.before.as_ref())
                .and_then(|b| match b.content() {
                    Content::Unit(t) => Some(t.as_str()),
                    Content::Kube(_) => None,
                });
            let named = text.map(|t| units_named(unit, t)).unwrap_or_default();
            for (j, o) in changes.iter().enumerate() {
                if j == i || o.action == Action::Delete {
                    continue;
                }
                // Units name each other only on their own host.
                let needed = match &o.id {
                    ResourceId::Systemd {
                        host: h,
                        unit: other,
                    } => h == host && named.contains(other),
                    // The unit reads its env file when it starts.
                    ResourceId::EnvFile {
                        host: h,
                        unit: reader,
                        ..
                    } => h == host && reader == unit,
                    ResourceId::Kube { .. } => false,
                };
                if needed {
                    out.insert(j);
                }
            }
        }
        ResourceId::EnvFile { .. } => {}
    }
    out
}

/// The units a unit file names as ordering or requirement dependencies, and the unit a trigger
/// (`.timer`, `.socket`, `.path`) activates: its `Unit=` or, by default, the same-named service.
fn units_named(unit: &str, text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut section = "";
    let mut activates = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') && line.ends_with(']') {
            section = &line[1..line.len() - 1];
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        match (section, key) {
            ("Unit", "Requires" | "Wants" | "BindsTo" | "Requisite" | "After") => {
                out.extend(value.split_whitespace().map(str::to_string));
            }
            ("Timer" | "Socket" | "Path", "Unit") => activates = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let trigger = [".timer", ".socket", ".path"]
        .iter()
        .find_map(|s| unit.strip_suffix(s));
    if let Some(stem) = trigger {
        out.insert(activates.unwrap_or_else(|| format!("{stem}.service")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Body;
    use serde_json::json;

    fn kube(ns: Option<&str>, kind: &str, name: &str, component: &str, action: Action) -> Change {
        let id = ResourceId::Kube {
            namespace: ns.map(str::to_string),
            kind: kind.into(),
            name: name.into(),
            api_version: "v1".into(),
        };
        Change {
            after: Some(Body::new(&id, Content::kube(json!({"kind": kind})))),
            id,
            component: component.into(),
            action,
            before: None,
            impact: Vec::new(),
            notes: Vec::new(),
            guards: Vec::new(),
            dry_run: None,
        }
    }

    fn unit(name: &str, text: &str, action: Action) -> Change {
        let id = ResourceId::unit(None, name);
        Change {
            after: Some(Body::new(&id, Content::unit(text))),
            id,
            component: "c".into(),
            action,
            before: None,
            impact: Vec::new(),
            notes: Vec::new(),
            guards: Vec::new(),
            dry_run: None,
        }
    }

    fn plan() -> Plan {
        let mut changes = vec![
            kube(None, "Namespace", "lab", "stack", Action::Create),
            kube(Some("lab"), "ConfigMap", "web", "web", Action::Create),
            kube(Some("lab"), "Deployment", "web", "web", Action::Create),
            kube(Some("lab"), "ConfigMap", "db", "db", Action::Update),
            unit("sync.timer", "[Timer]\nOnCalendar=daily\n", Action::Create),
            unit(
                "sync.service",
                "[Service]\nExecStart=/bin/true\n",
                Action::Create,
            ),
            unit(
                "other.service",
                "[Service]\nExecStart=/bin/true\n",
                Action::Update,
            ),
        ];
        changes.sort_by(|a, b| a.id.cmp(&b.id));
        Plan {
            stack: "lab".into(),
            changes,
            ..Plan::default()
        }
    }

    fn ids(p: &Plan) -> Vec<String> {
        p.changes.iter().map(|c| c.id.to_string()).collect()
    }

    fn sel(targets: &[&str], excludes: &[&str]) -> Selection {
        Selection {
            targets: targets.iter().map(|s| s.to_string()).collect(),
            excludes: excludes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_target_brings_what_it_depends_on_and_says_so() {
        let p = select(plan(), &sel(&["Deployment lab/*"], &[])).unwrap();
        assert_eq!(
            ids(&p),
            ["Namespace lab", "ConfigMap lab/web", "Deployment lab/web"]
        );
        let note = &p.changes[1].notes[0];
        assert!(
            note.contains("applied before `Deployment lab/web`, which depends on it"),
            "{note}"
        );
        let t = p.targeting.as_ref().unwrap();
        assert_eq!(t.dependencies.len(), 2);
        assert_eq!(t.left_out, 4);
    }

    #[test]
    fn a_timer_brings_its_service() {
        let p = select(plan(), &sel(&["unit *.timer"], &[])).unwrap();
        assert_eq!(ids(&p), ["unit sync.service", "unit sync.timer"]);
    }

    #[test]
    fn an_exclusion_takes_its_dependents_along() {
        let p = select(plan(), &sel(&[], &["Namespace lab"])).unwrap();
        assert_eq!(
            ids(&p),
            ["unit other.service", "unit sync.service", "unit sync.timer"]
        );
        assert!(
            p.warnings[0].contains("`Deployment lab/web`"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn a_pattern_matching_nothing_is_an_error() {
        let e = select(plan(), &sel(&["Deployment nope/*"], &[])).unwrap_err();
        assert!(
            e.to_string()
                .contains("`--target Deployment nope/*` matches nothing"),
            "{e}"
        );
        let e = select(plan(), &sel(&["unit [a"], &[])).unwrap_err();
        assert!(e.to_string().contains("is not a valid pattern"), "{e}");
    }

    #[test]
    fn no_selection_is_the_whole_plan() {
        let p = select(plan(), &Selection::default()).unwrap();
        assert_eq!(p, plan());
    }
}
