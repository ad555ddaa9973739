//! [`build`]: the whole way from a stack to a [`Plan`], in one call that never prints and never
//! reads stdin. Every front end (the CLI, the proxy's GitOps sync, tests) calls it and shows the
//! result its own way.
//!
//! The order of the steps matters and is this:
//! 1. render the stack (secrets through [`Sources::secrets`]), keep the planes asked for;
//! 2. put every kube object in the form the server stores (a Secret's `stringData` as base64
//!    `data`), on every path, so that offline, `--base` and live plans show a Secret alike;
//! 3. observe what to compare with ([`Against`]): the live planes through the backends (the
//!    cluster first), an older revision, or nothing; a plane with no cluster configured is left
//!    out with a warning, unless asked for by name;
//! 4. [`diff`](super::diff) (pure);
//! 5. keep volumes and protected components unless `prune_volumes`;
//! 6. env files restart their unit when they change.
//!
//! Secrets are never placeholders: rendering fails naming every secret without a value, and
//! plans that compare no values (`--offline`, `--base`) render with [`Secrets::redacted`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tracing::Instrument as _;
use tracing::field::Empty;

use super::{Cost, Live, Plan, PlaneTarget, Precondition, diff, kube, saved, units};
use crate::backend::Stats;
use crate::backend::kube::{Cluster, Kube, Listing};
use crate::backend::systemd::{Systemd, Target};
use crate::error::Error;
use crate::render::{self, Templates};
use crate::resource::{Desired, ResourceId};
use crate::stack::{LoadedStack, Plane, Stack};

pub use crate::sensitive::Secrets;

/// What a plan is made from besides the stack itself.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The templates: builtin, overridden by the stack's own folders.
    pub templates: Templates,
    /// The secrets templates ask for.
    pub secrets: Secrets,
}

impl Sources {
    /// The templates next to a loaded stack (builtin ones overridden by its `templates/` and
    /// `systemd-templates/`), with `secrets`.
    ///
    /// # Errors
    /// [`Error::Read`] when a template file cannot be read.
    pub fn for_stack(loaded: &LoadedStack, secrets: Secrets) -> Result<Self, Error> {
        Ok(Sources {
            templates: Templates::for_stack_dir(loaded.dir())?,
            secrets,
        })
    }

    /// Render `stack` (its components of `plane`, or all) with these templates and secrets.
    ///
    /// # Errors
    /// As [`render::render`].
    pub fn render(&self, stack: &Stack, plane: Option<Plane>) -> Result<Desired, Error> {
        render::render(stack, &self.templates, &self.secrets, plane)
    }
}

/// How to observe the live planes.
#[derive(Debug, Clone, Default)]
pub struct Observe {
    /// The cluster, shared with the rest of the run (the lock, apply).
    pub kube: Cluster,
    /// Use the calling user's systemd manager whatever `host.scope` says (`--user`).
    pub user: bool,
    /// Check each kube change with a server-side dry run: the plan shows what the server would
    /// store, and a change it refuses as failing.
    pub server_dry_run: bool,
    /// Dry runs take ownership of fields other managers own, as `apply --force-conflicts`.
    pub force_conflicts: bool,
}

/// What the stack is compared with.
#[derive(Debug, Clone)]
pub enum Against {
    /// The live planes, observed through the backends. Only such a plan can be applied.
    Live(Observe),
    /// Nothing: every object is new (`plan --offline`).
    Nothing,
    /// The stack at an older revision and its templates, rendered with the same secrets
    /// (`plan --base`); `None` when there was no stack then.
    Revision(Box<Option<(Stack, Templates)>>),
}

/// How to plan.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only this plane (`--plane`); all of them when `None`.
    pub plane: Option<Plane>,
    /// What to compare with.
    pub against: Against,
    /// Plan to delete volumes and protected components no longer rendered (`--prune-volumes`).
    pub prune_volumes: bool,
}

/// Plan `stack`: render it, compare it with what [`Options::against`] says, and decide every
/// change. Never prints, never reads stdin; safe to call from any tokio runtime (it creates
/// none). The plan carries warnings ([`Plan::warnings`]) and costs ([`Plan::costs`]) for the
/// front end to show.
///
/// Emits one `observe` span per plane observed, with `labctl.plane` and `labctl.requests`.
///
/// ```no_run
/// # async fn sync(checkout: &std::path::Path) -> Result<(), labctl::error::Error> {
/// use labctl::plan::{self, Against, Observe, Options, Secrets, Sources};
/// let loaded = labctl::stack::load(&checkout.join("stack.toml"))?;
/// let sources = Sources::for_stack(&loaded, Secrets::from_env())?;
/// let options = Options {
///     plane: None,
///     against: Against::Live(Observe::default()),
///     prune_volumes: false,
/// };
/// let plan = plan::build(&loaded.stack, &sources, &options).await?;
/// println!("{} changes", plan.actionable().count());
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Template`], [`Error::Manifest`], [`Error::Duplicate`] when rendering fails;
/// [`Error::Backend`] or [`Error::Read`] when a plane cannot be observed.
pub async fn build(stack: &Stack, sources: &Sources, options: &Options) -> Result<Plan, Error> {
    // A host-only machine has no cluster configured at all: without `--plane kube` that is
    // said, not an error. A configured cluster that cannot be reached is an error.
    let unconfigured = |how: &Observe| options.plane.is_none() && !how.kube.how().configured();
    let kube_early = match &options.against {
        Against::Live(how) if options.plane != Some(Plane::Systemd) && !unconfigured(how) => {
            Some(start_kube(stack, how))
        }
        _ => None,
    };
    // Observing the cluster starts with what needs no rendered stack (connecting, the inventory,
    // the LISTs of the kinds it records), which runs while the stack renders on other threads.
    let ((mut desired, asked), mut kube_early) = match kube_early {
        Some(early) => {
            let (stack, templates, secrets) = (
                stack.clone(),
                sources.templates.clone(),
                sources.secrets.clone(),
            );
            let plane = options.plane;
            let render = move || render_prepared(&stack, &templates, &secrets, plane);
            let (rendered, early) = alongside(tokio::task::spawn_blocking(render), early).await?;
            (rendered, Some(early))
        }
        None => (
            render_prepared(stack, &sources.templates, &sources.secrets, options.plane)?,
            None,
        ),
    };
    let name = &stack.stack.name;
    let mut plan = match &options.against {
        Against::Nothing => plan_of(stack, &desired, &Live::default(), options),
        Against::Revision(base) => match base.as_ref() {
            None => plan_of(stack, &desired, &Live::default(), options),
            Some((base_stack, templates)) => {
                let mut base =
                    render::render(base_stack, templates, &sources.secrets, options.plane)?;
                kube::prepare_all(&mut base);
                plan_of(stack, &desired, &Live::from_desired(&base), options)
            }
        },
        Against::Live(how) => {
            let mut live = Live::default();
            let mut targets = Vec::new();
            let mut warnings = Vec::new();
            let mut costs = Vec::new();
            let mut kube_side = None;
            let mut preconditions = std::collections::BTreeMap::new();
            if unconfigured(how) {
                warnings.push(
                    "kube: not planned: no cluster configured (`--kubeconfig`, KUBECONFIG, \
                     ~/.kube/config or an in-cluster service account); `--plane systemd` \
                     silences this"
                        .to_string(),
                );
                desired.retain_plane(Some(Plane::Systemd));
            } else if let Some(early) = kube_early.take() {
                let mut side = observe_kube(stack, &desired, early?).await?;
                live.objects = std::mem::take(&mut side.live.objects);
                // An object the account may not read is left out, not planned blind.
                for (id, why) in &side.observed.forbidden {
                    desired.objects.remove(id);
                    warnings.push(format!("kube: `{id}` left out of the plan: {why}"));
                }
                preconditions = std::mem::take(&mut side.pre);
                kube_side = Some(side);
                targets.push(PlaneTarget::Kube(how.kube.clone()));
            }
            if options.plane != Some(Plane::Kube) {
                let host = &stack.host;
                let target = Target::resolve(host.scope, how.user, host.unit_dir.as_deref())?;
                let (objects, cost, pre) = observe_systemd(name, &desired, target.clone()).await?;
                preconditions.extend(pre);
                live.objects.extend(objects.objects);
                costs.push(cost);
                targets.push(PlaneTarget::Systemd(target));
            }
            let mut plan = plan_of(stack, &desired, &live, options);
            if let Some(side) = kube_side {
                costs.insert(0, finish_kube(&mut plan, side, how).await);
            }
            plan.targets = targets;
            plan.warnings = warnings;
            plan.costs = costs;
            plan.preconditions = preconditions;
            super::saved::fill_generic(&mut plan, &live);
            super::drop_later(live);
            plan
        }
    };
    if sources.secrets.is_redacted() {
        plan.unread_secrets = asked.into_keys().collect();
    }
    plan.stack = name.clone();
    super::drop_later(desired);
    Ok(plan)
}

/// The stack rendered (the planes asked for), its kube objects in stored form, and the secrets
/// its templates asked for.
fn render_prepared(
    stack: &Stack,
    templates: &Templates,
    secrets: &Secrets,
    plane: Option<Plane>,
) -> Result<(Desired, BTreeMap<String, BTreeSet<String>>), Error> {
    let (mut desired, asked) = render::render_asked(stack, templates, secrets, plane)?;
    kube::prepare_all(&mut desired);
    Ok((desired, asked))
}

/// The pure part: diff, then volumes and protected components kept unless asked.
fn plan_of(stack: &Stack, desired: &Desired, live: &Live, options: &Options) -> Plan {
    let mut plan = diff(desired, live);
    units::env_file_impacts(&mut plan, desired);
    kube::keep_volumes(&mut plan, &stack.protected(), options.prune_volumes);
    plan
}

/// What observing the host gives: the live set, its cost, and each read object's precondition.
type HostObserved = (Live, Cost, BTreeMap<ResourceId, Precondition>);

/// The kube plane between observing and the end of planning: the connection (dry runs use
/// it after the diff), what was observed, and how lists merge.
struct KubeSide {
    k: Kube,
    parent: crate::resource::ResourceId,
    stored: Option<kube::Inventory>,
    observed: kube::Observed,
    live: Live,
    notes: std::collections::BTreeMap<crate::resource::ResourceId, Vec<String>>,
    types: kube::ListTypes,
    details: Vec<String>,
    /// Each read object's precondition, for a saved plan.
    pre: BTreeMap<ResourceId, Precondition>,
    /// The client's counts when observing began.
    before: Stats,
    /// Time spent observing before the stack was rendered (not the wait for it), and when
    /// observing resumed.
    before_render: Duration,
    resumed: Instant,
    span: tracing::Span,
}

/// The rendered stack, and what observing the cluster has given meanwhile. A failed render is
/// the error even when the cluster cannot be reached: the stack is the user's to fix first, and
/// its error comes without waiting for the cluster.
async fn alongside<R, T>(
    render: tokio::task::JoinHandle<Result<R, Error>>,
    early: impl Future<Output = Result<T, Error>>,
) -> Result<(R, Result<T, Error>), Error> {
    let mut render = render;
    let mut early = std::pin::pin!(early);
    let mut observed = None;
    let rendered = loop {
        tokio::select! {
            r = &mut render => break r,
            e = &mut early, if observed.is_none() => observed = Some(e),
        }
    };
    let rendered = rendered.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    let observed = match observed {
        Some(o) => o,
        None => early.await,
    };
    Ok((rendered, observed))
}

/// The part of observing the cluster that needs no rendered stack: connecting, the stack's
/// inventory, and the LISTs of the kinds it records in its namespaces with their OpenAPI
/// documents.
struct EarlyKube {
    k: Kube,
    parent: ResourceId,
    stored: Option<kube::Inventory>,
    /// What the LISTs read, kinds the inventory records included.
    listing: Listing,
    /// The namespaces the inventory records.
    namespaces: BTreeSet<String>,
    /// The list merge types of the OpenAPI documents of these group-versions, or why they could
    /// not be read.
    docs: Result<kube::ListTypes, Error>,
    early_gvs: BTreeSet<String>,
    details: Vec<String>,
    /// The client's counts when observing began.
    before: Stats,
    took: Duration,
    span: tracing::Span,
}

async fn start_kube(stack: &Stack, how: &Observe) -> Result<EarlyKube, Error> {
    let span = tracing::info_span!("observe", labctl.plane = "kube", labctl.requests = Empty);
    let started = Instant::now();
    let name = &stack.stack.name;
    async {
        // A client the run connected already (for its lock) has requests that are not ours.
        let fresh = !how.kube.is_connected();
        let k = how.kube.client().await?;
        let before = if fresh { Stats::default() } else { k.stats() };
        // What the stack applied before, kinds it no longer renders included.
        let parent = kube::inventory_parent(name, stack.stack.namespace());
        let stored = k
            .get(&parent)
            .await
            .ok()
            .flatten()
            .map(|p| kube::Inventory::read(&p));
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
        let early_gvs = kube::openapi_paths(applied_versions.iter().map(String::as_str));
        let mut listing = Listing::default();
        // The documents are read into merge types on a core of their own as soon as they
        // arrive, while the LISTs still come in and the stack still renders.
        let docs = async {
            let d = read_docs(&k, early_gvs.clone()).await?;
            let types =
                tokio::task::spawn_blocking(move || types_of(&d, kube::ListTypes::default()))
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            Ok::<_, Error>(types)
        };
        let (listed, docs) = futures_util::future::join(
            k.list(&kube::selector(name), &kinds, &namespaces, &mut listing),
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
fn types_of(docs: &[serde_json::Value], base: kube::ListTypes) -> kube::ListTypes {
    docs.iter()
        .map(kube::ListTypes::from_openapi)
        .fold(base, |acc, t| t.or(&acc))
}

/// The raw OpenAPI v3 documents of `gvs` (none read for none).
async fn read_docs(k: &Kube, gvs: BTreeSet<String>) -> Result<Vec<serde_json::Value>, Error> {
    if gvs.is_empty() {
        Ok(Vec::new())
    } else {
        k.openapi(&gvs).await
    }
}

/// The rest of observing the cluster, once the stack is rendered: the LISTs of kinds and
/// namespaces the inventory did not have, GETs of desired objects the LISTs did not return,
/// the OpenAPI documents of any other group-version found live, and the live set to diff.
async fn observe_kube(
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
        let kinds = kube::kinds_to_observe(desired);
        namespaces.extend(kube::namespaces_of(desired));
        let ids: Vec<_> = desired
            .objects
            .keys()
            .filter(|id| id.plane() == Plane::Kube)
            .cloned()
            .collect();
        k.list(&kube::selector(name), &kinds, &namespaces, &mut listing)
            .await?;
        let observed = k.observe(listing, &ids).await?;
        details.extend(observed.details.iter().cloned());
        let pre = saved::kube_preconditions(&observed.objects, &ids);
        let live_gvs = kube::openapi_paths(observed.objects.keys().filter_map(|id| match id {
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
        let compiled = kube::ListTypes::compiled();
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
        let (live, notes) = kube::live_set(&observed.objects, desired, name, &types);
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
async fn finish_kube(plan: &mut Plan, side: KubeSide, how: &Observe) -> Cost {
    kube::note_merges(plan, &side.notes);
    if how.server_dry_run {
        kube::check_with_server(plan, &side.k, &side.types, how.force_conflicts)
            .instrument(side.span.clone())
            .await;
    }
    plan.details.extend(side.details);
    // Objects this account may not read stay the stack's: their kinds stay recorded.
    let mut wanted = kube::Inventory::after(plan);
    for id in side.observed.forbidden.keys() {
        if let crate::resource::ResourceId::Kube {
            kind, api_version, ..
        } = id
        {
            wanted
                .group_kinds
                .insert(kube::group_kind(api_version, kind));
        }
    }
    plan.inventory = Some(kube::InventoryPlan {
        wanted,
        parent: side.parent,
        stored: side.stored,
    });
    super::drop_later(side.observed.objects);
    let mut stats = side.k.stats().since(side.before);
    // Observing's own time: what ran while the stack rendered is counted, not the wait for it.
    stats.elapsed = side.before_render + side.resumed.elapsed();
    side.span.record("labctl.requests", stats.calls);
    cost(Plane::Kube, stats)
}

async fn observe_systemd(
    stack: &str,
    desired: &Desired,
    target: Target,
) -> Result<HostObserved, Error> {
    let span = tracing::info_span!("observe", labctl.plane = "systemd", labctl.requests = Empty);
    let result = async {
        let sd = Systemd::connect(target).await?;
        let files = sd.unit_files()?;
        let names = units::units_to_observe(stack, desired, &files);
        let observed = sd.observe(&names).await?;
        let pre = saved::unit_preconditions(&files, &observed);
        let mut live = units::live_units(stack, &files, observed);
        observe_env_files(stack, desired, sd.target(), &mut live)?;
        Ok::<_, Error>((live, sd.stats(), pre))
    }
    .instrument(span.clone())
    .await;
    let (live, stats, pre) = result?;
    span.record("labctl.requests", stats.calls);
    Ok((live, cost(Plane::Systemd, stats), pre))
}

/// Read the env files the stack wants from where the manager looks for them (a missing one is
/// not live), and the stack's env files that its live units name and nothing wants.
fn observe_env_files(
    stack: &str,
    desired: &Desired,
    target: &Target,
    live: &mut Live,
) -> Result<(), Error> {
    for (id, want) in &desired.objects {
        let crate::resource::ResourceId::EnvFile { path, .. } = id else {
            continue;
        };
        let file = units::env_file_path(path, target.scope)?;
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                live.objects.insert(
                    id.clone(),
                    units::live_env_file(stack, &want.content, &text),
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Read { path: file, source }),
        }
    }
    // An env file of the stack's that nothing wants any more (its unit is removed, or no longer
    // reads it) is found through the live unit that names it, and pruned like the unit: a file
    // of secrets must not outlive its use. Only a file carrying the stack's marker is taken.
    let mut stale = Vec::new();
    for (id, obj) in &live.objects {
        let (ResourceId::Systemd { unit }, crate::resource::Content::Unit(text)) =
            (id, &obj.content)
        else {
            continue;
        };
        if !obj.owned {
            continue;
        }
        for path in text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("EnvironmentFile="))
            .map(|p| p.trim().trim_start_matches('-'))
        {
            let env = ResourceId::EnvFile {
                path: path.to_string(),
                unit: unit.clone(),
            };
            if desired.objects.contains_key(&env) || live.objects.contains_key(&env) {
                continue;
            }
            let file = units::env_file_path(path, target.scope)?;
            match std::fs::read_to_string(&file) {
                Ok(text) => {
                    let none = crate::resource::Content::kube(serde_json::json!({}));
                    let found = units::live_env_file(stack, &none, &text);
                    if found.owned {
                        stale.push((env, found));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Read { path: file, source }),
            }
        }
    }
    live.objects.extend(stale);
    Ok(())
}

fn cost(plane: Plane, stats: Stats) -> Cost {
    Cost {
        plane,
        phase: "observe",
        stats,
    }
}
