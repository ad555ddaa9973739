//! `--server-dry-run`: each differing object is checked with a server-side dry-run apply; the
//! plan shows what the server would store, and a change it refuses as failing.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::observed::{DryRun, DryRunError};
use crate::plan::{Action, Body, DryRunAnswer, Plan};
use crate::resource::{Content, ResourceId};

/// Check every kube change that writes with the server (`--server-dry-run`): a server-side
/// dry-run apply of its `after`, all at once (at most 16 in flight). What the server would
/// store is kept as [`DryRunAnswer::Stored`] (an update the server would not change anything
/// with becomes a no-op), a refusal as [`DryRunAnswer::Refused`]. A change the server cannot
/// judge yet (its namespace or its kind's definition is created by the same apply) gets a note.
/// `force` is `--force-conflicts`; adopting always takes ownership.
pub async fn check_with_server(
    plan: &mut Plan,
    server: &dyn DryRun,
    types: &ListTypes,
    force: bool,
) {
    use futures_util::StreamExt as _;
    let new_namespaces: BTreeSet<String> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Create && c.id.kind() == Some("Namespace"))
        .filter_map(|c| match &c.id {
            ResourceId::Kube { name, .. } => Some(name.clone()),
            ResourceId::Systemd { .. } | ResourceId::EnvFile { .. } => None,
        })
        .collect();
    let mut asks = Vec::new();
    for (i, c) in plan.changes.iter_mut().enumerate() {
        if c.id.plane() != crate::stack::Plane::Kube
            || !matches!(c.action, Action::Create | Action::Update | Action::Adopt)
        {
            continue;
        }
        if let ResourceId::Kube {
            namespace: Some(ns),
            ..
        } = &c.id
            && new_namespaces.contains(ns)
        {
            c.notes.push(format!(
                "not checked with the server: its namespace `{ns}` is created by this apply"
            ));
            continue;
        }
        if let Some(obj) = c.after.as_ref().and_then(|b| b.content().as_kube()) {
            asks.push((
                i,
                c.id.clone(),
                obj.clone(),
                force || c.action == Action::Adopt,
            ));
        }
    }
    let answers: Vec<(usize, Result<Value, DryRunError>)> = futures_util::stream::iter(asks)
        .map(|(i, id, obj, force)| async move { (i, server.dry_run(&id, &obj, force).await) })
        .buffer_unordered(16)
        .collect()
        .await;
    for (i, answer) in answers {
        let c = &mut plan.changes[i];
        let obj = c
            .after
            .as_ref()
            .and_then(|b| b.content().as_kube())
            .cloned();
        match answer {
            Ok(result) => {
                let (stored, _) = comparable_by(&result, obj.as_ref(), Some(types));
                let stored = Content::kube(stored);
                let unchanged = c.before.as_ref().map(|b| b.content()) == Some(&stored);
                if unchanged && c.action == Action::Update && c.impact.is_empty() {
                    // The server would store what is live: nothing to do.
                    c.action = Action::NoOp;
                    c.notes.clear();
                    c.before = None;
                    c.after = None;
                } else {
                    c.dry_run = Some(DryRunAnswer::Stored(Body::new(&c.id, stored)));
                }
            }
            Err(DryRunError::Refused(why)) => c.dry_run = Some(DryRunAnswer::Refused(why)),
            Err(DryRunError::Unchecked(why)) => {
                c.notes.push(format!("not checked with the server: {why}"));
            }
        }
    }
}
