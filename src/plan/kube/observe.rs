//! The cluster's part of building a plan, in two halves around the render: what needs no rendered
//! stack (connecting, the inventory, the LISTs of the kinds it records, their OpenAPI documents)
//! runs while the stack renders; the rest (LISTs of what the stack adds, GETs of what they did not
//! return, the projected live set) once it is rendered; after the diff, merge notes, dry runs and
//! the inventory the plan leaves.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tracing::Instrument as _;
use tracing::field::Empty;

use super::*;
use crate::backend::Stats;
use crate::backend::kube::{Kube, Listing};
use crate::error::Error;
use crate::plan::build::Observe;
use crate::plan::{Cost, Precondition, saved};
use crate::plan::{Live, Plan};
use crate::resource::{Desired, ResourceId};
use crate::stack::{Plane, Stack};

/// The kube plane between observing and the end of planning: the connection (dry runs use
/// it after the diff), what was observed, and how lists merge.
pub(in crate::plan) struct KubeSide {
    pub(in crate::plan) k: Kube,
    pub(in crate::plan) parent: crate::resource::ResourceId,
    pub(in crate::plan) stored: Option<Inventory>,
    pub(in crate::plan) observed: Observed,
    pub(in crate::plan) live: Live,
    pub(in crate::plan) notes: std::collections::BTreeMap<crate::resource::ResourceId, Vec<String>>,
    pub(in crate::plan) types: ListTypes,
    pub(in crate::plan) details: Vec<String>,
    /// Each read object's precondition, for a saved plan.
    pub(in crate::plan) pre: BTreeMap<ResourceId, Precondition>,
    /// The client's counts when observing began.
    pub(in crate::plan) before: Stats,
    /// Time spent observing before the stack was rendered (not the wait for it), and when
    /// observing resumed.
    pub(in crate::plan) before_render: Duration,
    pub(in crate::plan) resumed: Instant,
    pub(in crate::plan) span: tracing::Span,
}

/// The part of observing the cluster that needs no rendered stack: connecting, the stack's
/// inventory, and the LISTs of the kinds it records in its namespaces with their OpenAPI
/// documents.
pub(in crate::plan) struct EarlyKube {
    k: Kube,
    parent: ResourceId,
    stored: Option<Inventory>,
    /// What the LISTs read, kinds the inventory records included.
    listing: Listing,
    /// The namespaces the inventory records.
    namespaces: BTreeSet<String>,
    /// The list merge types of the OpenAPI documents of these group-versions, or why they could
    /// not be read.
    docs: Result<ListTypes, Error>,
    early_gvs: BTreeSet<String>,
    details: Vec<String>,
    /// The client's counts when observing began.
    before: Stats,
    took: Duration,
    span: tracing::Span,
}

pub(in crate::plan) async fn start_kube(stack: &Stack, how: &Observe) -> Result<EarlyKube, Error> {
    let span = tracing::info_span!("observe", labctl.plane = "kube", labctl.requests = Empty);
    let started = Instant::now();
    let name = &stack.stack.name;
    async {
        // A client the run connected already (for its lock) has requests that are not ours.
        let fresh = !how.kube.is_connected();
        let k = how.kube.client().await?;
        let before = if fresh { Stats::default() } else { k.stats() };
        // What the stack applied before, kinds it no longer renders included.
        let parent = inventory_parent(name, stack.stack.namespace());
        let stored = k
            .get(&parent)
            .await
            .ok()
            .flatten()
            .map(|p| Inventory::read(&p));
        let mut details = Vec::new();
        let mut kinds = BTreeSet::new();
        let mut namespaces = BTreeSet::new();
        let mut applied_versions = BTreeSet::new();
        if let Some(inv) = &stored {
            for gk in &inv.group_kinds {
                let (kind, group) = gk.split_once('.').unwrap_or((gk, ""));
                match k.api_version_of(group, kind) {
                    Some(v) => {
                        applied_versions.insert(v.clone());
                        kinds.insert((v, kind.to_string()));
                    }
                    None => details.push(format!(
                        "kube: the inventory lists `{gk}`, which the server no longer serves"
                    )),
                }
            }
            namespaces.extend(inv.namespaces.iter().cloned());
        }
        // The list merge types come from the server's OpenAPI v3 documents of the kinds with
        // live objects. The kinds the stack applied before (its inventory) have them: their
        // documents are read alongside the LISTs. Any other group-version found live is read
        // after them.
        let early_gvs = openapi_paths(applied_versions.iter().map(String::as_str));
        let mut listing = Listing::default();
        // The documents are read into merge types on a core of their own as soon as they
        // arrive, while the LISTs still come in and the stack still renders.
        let docs = async {
            let d = read_docs(&k, early_gvs.clone()).await?;
            let types = tokio::task::spawn_blocking(move || types_of(&d, ListTypes::default()))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            Ok::<_, Error>(types)
        };
        let (listed, docs) = futures_util::future::join(
            k.list(&selector(name), &kinds, &namespaces, &mut listing),
            docs,
        )
        .await;
        listed?;
        Ok(EarlyKube {
            k,
            parent,
            stored,
            listing,
            namespaces,
            docs,
            early_gvs,
            details,
            before,
            took: started.elapsed(),
            span: span.clone(),
        })
    }
    .instrument(span.clone())
    .await
}

/// The list merge types `docs` (OpenAPI v3 documents) declare, over `base`.
pub(in crate::plan) fn types_of(docs: &[serde_json::Value], base: ListTypes) -> ListTypes {
    docs.iter()
        .map(ListTypes::from_openapi)
        .fold(base, |acc, t| t.or(&acc))
}

/// The raw OpenAPI v3 documents of `gvs` (none read for none).
pub(in crate::plan) async fn read_docs(
    k: &Kube,
    gvs: BTreeSet<String>,
) -> Result<Vec<serde_json::Value>, Error> {
    if gvs.is_empty() {
        Ok(Vec::new())
    } else {
        k.openapi(&gvs).await
    }
}

/// The rest of observing the cluster, once the stack is rendered: the LISTs of kinds and
/// namespaces the inventory did not have, GETs of desired objects the LISTs did not return,
/// the OpenAPI documents of any other group-version found live, and the live set to diff.
pub(in crate::plan) async fn observe_kube(
    stack: &Stack,
    desired: &Desired,
    early: EarlyKube,
) -> Result<KubeSide, Error> {
    let EarlyKube {
        k,
        parent,
        stored,
        mut listing,
        mut namespaces,
        docs,
        early_gvs: early,
        mut details,
        before,
        took,
        span,
    } = early;
    let resumed = Instant::now();
    let name = &stack.stack.name;
    async {
        // The inventory's kinds are in `listing` already; its namespaces stay, for a kind this
        // account may list only per namespace.
        let kinds = kinds_to_observe(desired);
        namespaces.extend(namespaces_of(desired));
        let ids: Vec<_> = desired
            .objects
            .keys()
            .filter(|id| id.plane() == Plane::Kube)
            .cloned()
            .collect();
        k.list(&selector(name), &kinds, &namespaces, &mut listing)
            .await?;
        let observed = k.observe(listing, &ids).await?;
        details.extend(observed.details.iter().cloned());
        let pre = saved::kube_preconditions(&observed.objects, &ids);
        let live_gvs = openapi_paths(observed.objects.keys().filter_map(|id| match id {
            ResourceId::Kube { api_version, .. } => Some(api_version.as_str()),
            ResourceId::Systemd { .. } | ResourceId::EnvFile { .. } => None,
        }));
        let late: BTreeSet<String> = live_gvs.difference(&early).cloned().collect();
        let docs = match docs {
            Ok(types) if !late.is_empty() => {
                (read_docs(&k, late.clone()).await).map(|more| types_of(&more, types))
            }
            other => other,
        };
        let compiled = ListTypes::compiled();
        // Every group-version asked for has a document, or the read failed.
        let read_any = !early.is_empty() || !late.is_empty();
        let types = match docs {
            Ok(_) if !read_any => compiled,
            Ok(types) => {
                details.push(format!(
                    "kube: list merge types from the server's OpenAPI v3 ({})",
                    early.union(&late).cloned().collect::<Vec<_>>().join(", ")
                ));
                types.or(&compiled)
            }
            Err(e) => {
                details.push(format!(
                    "kube: list merge types from the recorded table (the server's OpenAPI v3: {})",
                    e.report()
                ));
                compiled
            }
        };
        let (live, notes) = live_set(&observed.objects, desired, name, &types);
        Ok(KubeSide {
            k,
            parent,
            stored,
            observed,
            live,
            notes,
            types,
            details,
            pre,
            before,
            before_render: took,
            resumed,
            span: span.clone(),
        })
    }
    .instrument(span.clone())
    .await
}

/// After the diff: merge notes, then the server's dry runs (`--server-dry-run`); the cost of
/// the whole kube observation.
pub(in crate::plan) async fn finish_kube(plan: &mut Plan, side: KubeSide, how: &Observe) -> Cost {
    note_merges(plan, &side.notes);
    if how.server_dry_run {
        check_with_server(plan, &side.k, &side.types, how.force_conflicts)
            .instrument(side.span.clone())
            .await;
    }
    plan.details.extend(side.details);
    // Objects this account may not read stay the stack's: their kinds stay recorded.
    let mut wanted = Inventory::after(plan);
    for id in side.observed.forbidden.keys() {
        if let crate::resource::ResourceId::Kube {
            kind, api_version, ..
        } = id
        {
            wanted.group_kinds.insert(group_kind(api_version, kind));
        }
    }
    plan.inventory = Some(InventoryPlan {
        wanted,
        parent: side.parent,
        stored: side.stored,
    });
    crate::plan::drop_later(side.observed.objects);
    let mut stats = side.k.stats().since(side.before);
    // Observing's own time: what ran while the stack rendered is counted, not the wait for it.
    stats.elapsed = side.before_render + side.resumed.elapsed();
    side.span.record("labctl.requests", stats.calls);
    Cost {
        plane: Plane::Kube,
        host: None,
        phase: "observe",
        stats,
    }
}
