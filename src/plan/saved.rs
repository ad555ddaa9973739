//! Saved plans: `labctl plan --out FILE` writes a plan together with what it was made from, and
//! `labctl apply FILE` applies exactly that plan or refuses, naming what moved.
//!
//! What a plan was made from is, for every object it read, a [`Precondition`]: a kube object's
//! `resourceVersion` (or that it was absent), a unit file's content hash with its load state and
//! whether systemd needed a reload, and, for any other kind of resource, a hash of what was
//! observed. Plus the stack file and its templates (one hash) and the options that shaped the
//! plan.
//!
//! The file holds no secret value: contents are stored as views show them (sensitive values
//! replaced) and compared by the hash of that redacted text; secrets are resolved again when the
//! plan is applied. Applying makes the plan again from the same stack and options, then compares:
//! every precondition must hold and every change must be the one saved; otherwise nothing is
//! applied ([`check`]). Kube writes then carry the recorded `resourceVersion`
//! ([`Plan::expect_versions`]), so that a change in the gap between check and write is refused by
//! the server.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Action, Impact, Live, ObservedUnit, Plan, Summary, Targeting};
use crate::error::{Error, Remedy};
use crate::render::Templates;
use crate::resource::{At, ResourceId};

/// The version of the JSON plan format (`plan -o json` and saved plans; docs/plan-json.md).
pub const FORMAT_VERSION: &str = "2";

/// What one object was when the plan read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Precondition {
    /// It did not exist.
    Absent,
    /// A kube object, at this `resourceVersion`.
    Kube {
        /// `metadata.resourceVersion`.
        resource_version: String,
        /// The field manager of its latest `managedFields` entry: who changed it last.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_manager: Option<String>,
    },
    /// A unit: its file, its load state, and whether systemd had loaded the file on disk.
    Unit {
        /// SHA-256 of the unit file's bytes (`none` when systemd loaded it with no file).
        sha256: String,
        /// `LoadState`.
        load_state: String,
        /// `NeedDaemonReload`.
        need_daemon_reload: bool,
    },
    /// Any other resource: SHA-256 of what was observed.
    Content {
        /// The hash.
        sha256: String,
    },
}

impl Precondition {
    /// Whether `now` is the same state (who changed a kube object last does not count).
    pub fn holds(&self, now: &Precondition) -> bool {
        match (self, now) {
            (
                Precondition::Kube {
                    resource_version: a,
                    ..
                },
                Precondition::Kube {
                    resource_version: b,
                    ..
                },
            ) => a == b,
            (a, b) => a == b,
        }
    }

    /// How it went from `self` to `now`, as `resourceVersion 812 → 840, changed by kubectl-edit`.
    pub fn describe_change(&self, now: &Precondition) -> String {
        use Precondition::*;
        let by = |m: &Option<String>| {
            m.as_ref()
                .map(|m| format!(", changed by {m}"))
                .unwrap_or_default()
        };
        match (self, now) {
            (
                Kube {
                    resource_version: a,
                    ..
                },
                Kube {
                    resource_version: b,
                    last_manager,
                },
            ) => format!("resourceVersion {a} → {b}{}", by(last_manager)),
            (Absent, Kube { last_manager, .. }) => format!(
                "created since the plan{}",
                last_manager
                    .as_ref()
                    .map(|m| format!(" (by {m})"))
                    .unwrap_or_default()
            ),
            (
                Kube {
                    resource_version, ..
                },
                Absent,
            ) => format!("deleted since the plan (was resourceVersion {resource_version})"),
            (Absent, Unit { .. } | Content { .. }) => "created since the plan".into(),
            (Unit { .. } | Content { .. }, Absent) => "deleted since the plan".into(),
            (
                Unit {
                    sha256: a,
                    load_state: la,
                    need_daemon_reload: ra,
                },
                Unit {
                    sha256: b,
                    load_state: lb,
                    need_daemon_reload: rb,
                },
            ) => {
                let mut what = Vec::new();
                if a != b {
                    what.push(format!("file changed (sha256 {} → {})", short(a), short(b)));
                }
                if la != lb {
                    what.push(format!("load state {la} → {lb}"));
                }
                if ra != rb {
                    what.push(if *rb {
                        "systemd now needs a daemon-reload".to_string()
                    } else {
                        "systemd was reloaded".to_string()
                    });
                }
                what.join(", ")
            }
            (Content { sha256: a }, Content { sha256: b }) => {
                format!("content changed (sha256 {} → {})", short(a), short(b))
            }
            (a, b) => format!("{a:?} → {b:?}"),
        }
    }
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

/// SHA-256 of `bytes`, hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The preconditions of the kube objects a plan read: every id asked for (`read`) and every
/// object observed. An object the server returned is at its `resourceVersion`; one it did not is
/// absent.
pub fn kube_preconditions(
    observed: &BTreeMap<ResourceId, Value>,
    read: &[ResourceId],
) -> BTreeMap<ResourceId, Precondition> {
    // Read in parallel and built in bulk (both are in key order): on a large stack this was a
    // few milliseconds on one core while the other waited.
    let states = crate::par::map(observed.iter().collect(), 256, |(id, obj)| {
        (id.clone(), kube_state(obj))
    });
    let mut out: BTreeMap<ResourceId, Precondition> = states.into_iter().collect();
    for id in read {
        if !out.contains_key(id) {
            out.insert(id.clone(), Precondition::Absent);
        }
    }
    out
}

/// The precondition of one live kube object.
pub fn kube_state(obj: &Value) -> Precondition {
    let resource_version = obj
        .at("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // The latest entry; on a tie (times are to the second) another tool's, not labctl's own.
    let last_manager = obj
        .at("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let m = e.get("manager")?.as_str()?;
            let t = e.get("time").and_then(Value::as_str).unwrap_or_default();
            Some((t, m != super::kube::FIELD_MANAGER, m))
        })
        .max()
        .map(|(_, _, m)| m.to_string());
    Precondition::Kube {
        resource_version,
        last_manager,
    }
}

/// The preconditions of the units a plan read on `host` (`None`: this machine): each observed
/// unit's file (in labctl's folder, or where systemd loaded it from), load state and
/// `NeedDaemonReload`; absent when there is no file and systemd knows no such unit.
pub fn unit_preconditions(
    host: Option<&str>,
    files: &BTreeMap<String, String>,
    observed: &[ObservedUnit],
) -> BTreeMap<ResourceId, Precondition> {
    observed
        .iter()
        .map(|o| {
            let text = files
                .get(&o.name)
                .or(o.loaded_elsewhere.as_ref())
                .map(|t| sha256(t.as_bytes()));
            let pre = if text.is_none() && o.state.load_state == "not-found" {
                Precondition::Absent
            } else {
                Precondition::Unit {
                    sha256: text.unwrap_or_else(|| "none".into()),
                    load_state: o.state.load_state.clone(),
                    need_daemon_reload: o.state.need_daemon_reload,
                }
            };
            (ResourceId::unit(host, o.name.clone()), pre)
        })
        .collect()
}

/// Give every change of `plan` that has no precondition yet the generic one: a hash of what
/// `live` holds for it, or absent. Resources with no precondition of their own (anything not a
/// kube object or a unit) are covered this way.
pub fn fill_generic(plan: &mut Plan, live: &Live) {
    for c in &plan.changes {
        if plan.preconditions.contains_key(&c.id) {
            continue;
        }
        let pre = match live.objects.get(&c.id) {
            Some(o) => Precondition::Content {
                sha256: sha256(o.content.text().as_bytes()),
            },
            None => Precondition::Absent,
        };
        plan.preconditions.insert(c.id.clone(), pre);
    }
}

/// One hash of the stack file's bytes and every template (name and text) it renders with.
pub fn stack_hash(stack_text: &[u8], templates: &Templates) -> String {
    let mut h = Sha256::new();
    h.update(stack_text);
    for (name, _) in templates.names() {
        h.update([0]);
        h.update(name.as_bytes());
        h.update([0]);
        h.update(templates.text(name).unwrap_or_default().as_bytes());
    }
    hex::encode(h.finalize())
}

/// The options that shaped a plan, recorded so that applying makes the same plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MadeWith {
    /// The stack file, as given.
    pub stack_file: PathBuf,
    /// `--plane`: `kube`, `systemd`, or none for both.
    pub plane: Option<String>,
    /// `--user`.
    pub user: bool,
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
    /// `--server-dry-run`.
    pub server_dry_run: bool,
    /// `--prune-volumes`.
    pub prune_volumes: bool,
    /// `--target` patterns.
    pub targets: Vec<String>,
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
}

/// One precondition as the JSON plan shows it.
#[derive(Debug, Serialize)]
pub struct JsonPrecondition<'a> {
    /// The human name of the object.
    pub address: String,
    /// Its id.
    pub id: &'a ResourceId,
    /// What it was.
    #[serde(flatten)]
    pub state: &'a Precondition,
}

/// The preconditions of `plan`, in id order, as the JSON plan shows them.
pub fn json_preconditions(plan: &Plan) -> Vec<JsonPrecondition<'_>> {
    plan.preconditions
        .iter()
        .map(|(id, state)| JsonPrecondition {
            address: id.to_string(),
            id,
            state,
        })
        .collect()
}

#[derive(Serialize)]
struct WriteChange<'a> {
    address: String,
    id: &'a ResourceId,
    component: &'a str,
    action: Action,
    before: Option<String>,
    after: Option<String>,
    after_sha256: Option<String>,
    impact: &'a [Impact],
    notes: &'a [String],
}

#[derive(Serialize)]
struct WritePlan<'a> {
    format_version: &'static str,
    labctl_version: &'static str,
    saved_plan: bool,
    stack: &'a str,
    stack_sha256: &'a str,
    made_with: &'a MadeWith,
    changes_present: bool,
    summary: Summary,
    targeting: &'a Option<Targeting>,
    changes: Vec<WriteChange<'a>>,
    preconditions: Vec<JsonPrecondition<'a>>,
}

/// The file's header, read first so that a file of another version is refused by name before
/// anything else is parsed.
#[derive(Deserialize)]
struct Header {
    format_version: Option<String>,
    labctl_version: Option<String>,
    saved_plan: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ReadChange {
    address: String,
    action: Value,
    after_sha256: Option<String>,
    impact: Value,
}

#[derive(Debug, Deserialize)]
struct ReadPrecondition {
    address: String,
    #[serde(flatten)]
    state: Precondition,
}

/// A saved plan as read back: what applying it must find.
#[derive(Debug, Deserialize)]
pub struct SavedPlan {
    /// The stack's name.
    pub stack: String,
    /// [`stack_hash`] when it was made.
    pub stack_sha256: String,
    /// The options that shaped it.
    pub made_with: MadeWith,
    changes: Vec<ReadChange>,
    preconditions: Vec<ReadPrecondition>,
}

/// The content of a change side as the file holds it, and its hash: the text views show
/// (sensitive values replaced), so neither reveals a secret.
fn shown_and_hash(c: &super::Change) -> (Option<String>, Option<String>, Option<String>) {
    let before = c.before.as_ref().map(|b| b.shown(None));
    let after = c.after.as_ref().map(|a| a.shown(c.before.as_ref()));
    let hash = c.after.as_ref().map(|a| sha256(a.shown(None).as_bytes()));
    (before, after, hash)
}

/// The saved-plan document for `plan`, made from a stack whose [`stack_hash`] is `stack_sha256`
/// with `made_with`.
pub fn to_json(plan: &Plan, stack_sha256: &str, made_with: &MadeWith) -> String {
    let doc = WritePlan {
        format_version: FORMAT_VERSION,
        labctl_version: env!("CARGO_PKG_VERSION"),
        saved_plan: true,
        stack: &plan.stack,
        stack_sha256,
        made_with,
        changes_present: !plan.is_empty(),
        summary: plan.summary(),
        targeting: &plan.targeting,
        changes: plan
            .changes
            .iter()
            .map(|c| {
                let (before, after, after_sha256) = shown_and_hash(c);
                WriteChange {
                    address: c.id.to_string(),
                    id: &c.id,
                    component: &c.component,
                    action: c.action,
                    before,
                    after,
                    after_sha256,
                    impact: &c.impact,
                    notes: &c.notes,
                }
            })
            .collect(),
        preconditions: json_preconditions(plan),
    };
    let mut s = serde_json::to_string_pretty(&doc).expect("a plan serialises");
    s.push('\n');
    s
}

/// Write `text` to `path` atomically and durably ([`crate::atomic`]): a reader never sees half a
/// plan.
///
/// # Errors
/// [`Error::Write`] naming the file.
pub fn write(path: &Path, text: &str) -> Result<(), Error> {
    crate::atomic::write(path, text.as_bytes(), crate::atomic::Access::Private)
}

impl SavedPlan {
    /// Read a saved plan.
    ///
    /// # Errors
    /// [`Error::Read`] when the file cannot be read; [`Error::Usage`] when it is not a saved
    /// plan, or was saved by another labctl version (naming both versions).
    pub fn read(path: &Path) -> Result<SavedPlan, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let not_saved = |why: String| {
            Error::Usage(format!(
                "`{}` is not a saved plan ({why}); make one with `labctl plan --out {}`",
                path.display(),
                path.display()
            ))
        };
        let header: Header =
            serde_json::from_str(&text).map_err(|e| not_saved(format!("not JSON: {e}")))?;
        if header.saved_plan != Some(true) {
            return Err(not_saved("no `saved_plan: true`".into()));
        }
        let ours = env!("CARGO_PKG_VERSION");
        let version = header.labctl_version.unwrap_or_else(|| "unknown".into());
        let format = header.format_version.unwrap_or_else(|| "unknown".into());
        if version != ours || format != FORMAT_VERSION {
            return Err(Error::Usage(format!(
                "`{}` was saved by labctl {version} (plan format {format}); this is labctl \
                 {ours} (plan format {FORMAT_VERSION}), which applies only its own saved plans: \
                 make the plan again with this labctl",
                path.display()
            )));
        }
        serde_json::from_str(&text).map_err(|e| not_saved(e.to_string()))
    }

    /// The `--target`/`--exclude` patterns the plan was made with.
    pub fn selection(&self) -> super::Selection {
        super::Selection {
            targets: self.made_with.targets.clone(),
            excludes: self.made_with.excludes.clone(),
        }
    }
}

/// Check `fresh` (the plan made again, now, from the same stack and options) against `saved`:
/// the stack and templates must be the same, every precondition must hold, and every change must
/// be the saved one. On success, `fresh` is what `saved` described, and its kube updates carry
/// the recorded `resourceVersion` ([`Plan::expect_versions`]).
///
/// # Errors
/// [`Error::Refused`] naming the file and every object that moved and how
/// (`ConfigMap homelab/loki: resourceVersion 812 → 840, changed by kubectl-edit`), or every
/// change that differs; nothing has been applied.
pub fn check(
    file: &Path,
    saved: &SavedPlan,
    stack_sha256: &str,
    fresh: &mut Plan,
) -> Result<(), Error> {
    let refuse = |why: String| Error::Refused {
        what: format!("apply the saved plan `{}`", file.display()),
        why,
        remedy: Remedy::NewPlan,
    };
    if saved.stack_sha256 != stack_sha256 {
        return Err(refuse(format!(
            "the stack `{}` or its templates changed since the plan was made (sha256 {} → {})",
            saved.made_with.stack_file.display(),
            short(&saved.stack_sha256),
            short(stack_sha256)
        )));
    }
    let was: BTreeMap<&str, &Precondition> = saved
        .preconditions
        .iter()
        .map(|p| (p.address.as_str(), &p.state))
        .collect();
    let now: BTreeMap<String, &Precondition> = fresh
        .preconditions
        .iter()
        .map(|(id, p)| (id.to_string(), p))
        .collect();
    let addresses: BTreeSet<&str> = was
        .keys()
        .copied()
        .chain(now.keys().map(String::as_str))
        .collect();
    let mut moved = Vec::new();
    for a in addresses {
        let before = was.get(a).copied().unwrap_or(&Precondition::Absent);
        let after = now.get(a).copied().unwrap_or(&Precondition::Absent);
        if !before.holds(after) {
            moved.push(format!("{a}: {}", before.describe_change(after)));
        }
    }
    if !moved.is_empty() {
        return Err(refuse(format!(
            "{} object(s) changed since the plan was made: {}",
            moved.len(),
            moved.join("; ")
        )));
    }
    // The same world and the same stack make the same plan, except what the preconditions do not
    // cover (a unit stopped by hand, a secret set since): any such difference refuses too.
    let key = |action: &Value, impact: &Value, hash: &Option<String>| {
        format!("{action} {impact} {}", hash.as_deref().unwrap_or("-"))
    };
    let want: BTreeMap<&str, String> = saved
        .changes
        .iter()
        .filter(|c| c.action != "no-op")
        .map(|c| {
            (
                c.address.as_str(),
                key(&c.action, &c.impact, &c.after_sha256),
            )
        })
        .collect();
    let mut got: BTreeMap<String, String> = BTreeMap::new();
    for c in fresh.actionable() {
        let (_, _, hash) = shown_and_hash(c);
        let action = serde_json::to_value(c.action).unwrap_or_default();
        let impact = serde_json::to_value(&c.impact).unwrap_or_default();
        got.insert(c.id.to_string(), key(&action, &impact, &hash));
    }
    let mut differ = Vec::new();
    for (a, w) in &want {
        match got.get(*a) {
            None => differ.push(format!("{a}: planned, but now nothing to do")),
            Some(g) if g != w => differ.push(format!("{a}: the change is not the one saved")),
            Some(_) => {}
        }
    }
    for a in got.keys() {
        if !want.contains_key(a.as_str()) {
            differ.push(format!(
                "{a}: now needs a change the saved plan does not have"
            ));
        }
    }
    if !differ.is_empty() {
        return Err(refuse(format!(
            "the plan made now differs from the saved one: {}",
            differ.join("; ")
        )));
    }
    let updates: Vec<ResourceId> = fresh
        .actionable()
        .filter(|c| matches!(c.action, Action::Update | Action::Adopt))
        .map(|c| c.id.clone())
        .collect();
    for id in updates {
        if let Some(Precondition::Kube {
            resource_version, ..
        }) = fresh.preconditions.get(&id)
            && !resource_version.is_empty()
        {
            fresh
                .expect_versions
                .insert(id.clone(), resource_version.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_last_manager_is_the_latest_entry_and_another_tool_wins_a_tie() {
        let obj = json!({"metadata": {"resourceVersion": "840", "managedFields": [
            {"manager": "labctl", "operation": "Apply", "time": "2026-01-01T00:00:05Z"},
            {"manager": "kubectl-edit", "operation": "Update", "time": "2026-01-01T00:00:05Z"},
            {"manager": "old", "operation": "Update", "time": "2025-01-01T00:00:00Z"}
        ]}});
        let now = kube_state(&obj);
        let was = Precondition::Kube {
            resource_version: "812".into(),
            last_manager: Some("labctl".into()),
        };
        assert!(!was.holds(&now));
        assert_eq!(
            was.describe_change(&now),
            "resourceVersion 812 → 840, changed by kubectl-edit"
        );
        let same = Precondition::Kube {
            resource_version: "840".into(),
            last_manager: None,
        };
        assert!(same.holds(&now), "who changed it last is not a change");
    }

    #[test]
    fn preconditions_serialise_as_documented() {
        let p = Precondition::Unit {
            sha256: "ab".into(),
            load_state: "loaded".into(),
            need_daemon_reload: false,
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"state": "unit", "sha256": "ab", "load_state": "loaded", "need_daemon_reload": false})
        );
        assert_eq!(
            serde_json::to_value(Precondition::Absent).unwrap(),
            json!({"state": "absent"})
        );
    }
}
