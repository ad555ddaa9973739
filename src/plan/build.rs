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

use tracing::Instrument as _;
use tracing::field::Empty;

use futures_util::StreamExt as _;

use super::kube::observe::{finish_kube, observe_kube, start_kube};
use super::{Cost, Live, Plan, PlaneTarget, Precondition, diff, kube, saved, units};
use crate::backend::kube::Cluster;
use crate::backend::ssh::{Remote, Remotes};
use crate::backend::systemd::{Systemd, Target};
use crate::error::{Error, HostFailure};
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
#[derive(Debug, Clone)]
pub struct Observe {
    /// The cluster, shared with the rest of the run (the lock, apply).
    pub kube: Cluster,
    /// Use the calling user's systemd manager whatever `host.scope` says (`--user`; this
    /// machine only).
    pub user: bool,
    /// Check each kube change with a server-side dry run: the plan shows what the server would
    /// store, and a change it refuses as failing.
    pub server_dry_run: bool,
    /// Dry runs take ownership of fields other managers own, as `apply --force-conflicts`.
    pub force_conflicts: bool,
    /// The `[hosts.<name>]` machines, each reached once for the whole run (the lock, the plan,
    /// apply).
    pub hosts: Remotes,
    /// How many hosts are observed at once (`--hosts-concurrency`).
    pub hosts_concurrency: usize,
}

/// The default of [`Observe::hosts_concurrency`] (and of apply's).
pub const DEFAULT_HOSTS_CONCURRENCY: usize = 8;

impl Default for Observe {
    fn default() -> Self {
        Observe {
            kube: Cluster::default(),
            user: false,
            server_dry_run: false,
            force_conflicts: false,
            hosts: Remotes::default(),
            hosts_concurrency: DEFAULT_HOSTS_CONCURRENCY,
        }
    }
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

impl Against {
    /// The same, observing up to `n` hosts at once (`--hosts-concurrency`; live planes only).
    pub fn with_hosts_concurrency(mut self, n: usize) -> Self {
        if let Against::Live(how) = &mut self {
            how.hosts_concurrency = n;
        }
        self
    }
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
            }
            // The cluster and every host at once: a plan costs its slowest part, not their sum.
            let early = if unconfigured(how) {
                None
            } else {
                kube_early.take()
            };
            let cluster = async {
                match early {
                    Some(Ok(early)) => Some(observe_kube(stack, &desired, early).await),
                    Some(Err(e)) => Some(Err(e)),
                    None => None,
                }
            };
            let hosts = async {
                if options.plane == Some(Plane::Kube) {
                    return Ok(Vec::new());
                }
                // Each host failing alone: one that cannot be observed is left out of the
                // plan, named with why. This machine's manager beside them, not counted.
                let mut places = host_places(stack, how)?.into_iter();
                let local = places.next().expect("this machine comes first");
                let (local, mut remote) = futures_util::join!(
                    observe_systemd(name, &desired, local),
                    futures_util::stream::iter(
                        places.map(|place| observe_systemd(name, &desired, place)),
                    )
                    .buffered(how.hosts_concurrency.max(1))
                    .collect::<Vec<_>>()
                );
                remote.insert(0, local);
                Ok::<_, Error>(remote)
            };
            let (cluster, hosts) = futures_util::join!(cluster, hosts);
            if let Some(side) = cluster {
                let mut side = side?;
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
            let mut unreached = Vec::new();
            for (place, result) in hosts? {
                match (result, place) {
                    (Ok((target, objects, cost, pre)), _) => {
                        preconditions.extend(pre);
                        live.objects.extend(objects.objects);
                        costs.push(cost);
                        targets.push(PlaneTarget::Systemd(target));
                    }
                    (Err(e), HostPlace::Remote(remote)) => {
                        unreached.push(host_failure(&remote, &e));
                    }
                    (Err(e), HostPlace::Local(_)) => return Err(e),
                }
            }
            desired.objects.retain(|id, _| {
                id.host()
                    .is_none_or(|h| !unreached.iter().any(|u: &HostFailure| u.host == h))
            });
            let mut plan = plan_of(stack, &desired, &live, options);
            plan.unreached = unreached;
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

/// What observing a host gives: where it is (resolved: its unit folder found), the live set,
/// its cost, and each read object's precondition.
type HostObserved = (Target, Live, Cost, BTreeMap<ResourceId, Precondition>);

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

/// Where a host's units live: this machine's manager, or a `[hosts.<name>]` one.
#[derive(Debug, Clone)]
enum HostPlace {
    /// This machine.
    Local(Target),
    /// Another machine, reached over ssh when observed.
    Remote(Remote),
}

/// Every host the stack declares: this machine first, then each `[hosts.<name>]`, by name. A
/// declared host is observed even when nothing is placed on it any more: what the stack put
/// there before is found and removed.
fn host_places(stack: &Stack, how: &Observe) -> Result<Vec<HostPlace>, Error> {
    let host = &stack.host;
    let mut out = vec![HostPlace::Local(Target::resolve(
        host.scope,
        how.user,
        host.unit_dir.as_deref(),
    )?)];
    for (name, h) in &stack.hosts {
        out.push(HostPlace::Remote(how.hosts.get(
            name,
            &h.ssh,
            h.scope,
            h.unit_dir.as_deref(),
        )?));
    }
    Ok(out)
}

/// How a host failed, in the words that say most: the error, and what ssh said last when that
/// is not in it already (a connection that dropped says why only there).
pub(crate) fn host_failure(remote: &Remote, e: &Error) -> HostFailure {
    let mut why = e.report();
    if let Some(words) = remote.last_words()
        && !why.contains(&words)
    {
        why = format!("{why} (ssh: {words})");
    }
    HostFailure {
        host: remote.name().to_string(),
        why,
    }
}

async fn observe_systemd(
    stack: &str,
    desired: &Desired,
    place: HostPlace,
) -> (HostPlace, Result<HostObserved, Error>) {
    let span = tracing::info_span!("observe", labctl.plane = "systemd", labctl.requests = Empty);
    let result = async {
        let target = match &place {
            HostPlace::Local(t) => t.clone(),
            HostPlace::Remote(remote) => Target::on(remote.clone()).await?,
        };
        let host = target.host().map(str::to_string);
        let host = host.as_deref();
        let sd = Systemd::connect(target).await?;
        let dir = sd.read_unit_dir().await?;
        let names = units::units_to_observe(stack, host, desired, &dir.files);
        let observed = sd.observe(&names, &dir).await?;
        let pre = saved::unit_preconditions(host, &dir.files, &observed);
        let mut live = units::live_units(stack, host, &dir.files, observed);
        observe_env_files(stack, desired, &sd, &mut live).await?;
        Ok::<_, Error>((sd.target().clone(), live, sd.stats(), pre))
    }
    .instrument(span.clone())
    .await;
    let result = result.map(|(target, live, stats, pre)| {
        span.record("labctl.requests", stats.calls);
        let cost = Cost {
            plane: Plane::Systemd,
            host: target.host().map(str::to_string),
            phase: "observe",
            stats,
        };
        (target, live, cost, pre)
    });
    (place, result)
}

/// Read the env files the stack wants on the manager's host from where the manager looks for
/// them (a missing one is not live), and the stack's env files that its live units there name
/// and nothing wants. Two reads in all, each of every file at once.
async fn observe_env_files(
    stack: &str,
    desired: &Desired,
    sd: &Systemd,
    live: &mut Live,
) -> Result<(), Error> {
    let target = sd.target();
    let host = target.host();
    let at = |path: &str| units::env_file_path_on(path, target.scope, &|k| target.var(k));
    let mut wanted = Vec::new();
    for (id, want) in &desired.objects {
        let ResourceId::EnvFile { path, .. } = id else {
            continue;
        };
        if id.host() != host {
            continue;
        }
        wanted.push((id, want, at(path)?));
    }
    let files: Vec<_> = wanted.iter().map(|(_, _, f)| f.clone()).collect();
    for ((id, want, _), text) in wanted.iter().zip(sd.read_files(&files).await?) {
        if let Some(text) = text {
            live.objects.insert(
                (*id).clone(),
                units::live_env_file(stack, &want.content, &text),
            );
        }
    }
    // An env file of the stack's that nothing wants any more (its unit is removed, or no longer
    // reads it) is found through the live unit that names it, and pruned like the unit: a file
    // of secrets must not outlive its use. Only a file carrying the stack's marker is taken.
    let mut maybe = Vec::new();
    for (id, obj) in &live.objects {
        let (ResourceId::Systemd { unit, .. }, crate::resource::Content::Unit(text)) =
            (id, &obj.content)
        else {
            continue;
        };
        if !obj.owned || id.host() != host {
            continue;
        }
        for path in text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("EnvironmentFile="))
            .map(|p| p.trim().trim_start_matches('-'))
        {
            let env = ResourceId::EnvFile {
                host: host.map(str::to_string),
                path: path.to_string(),
                unit: unit.clone(),
            };
            if desired.objects.contains_key(&env) || live.objects.contains_key(&env) {
                continue;
            }
            maybe.push((env, at(path)?));
        }
    }
    let files: Vec<_> = maybe.iter().map(|(_, f)| f.clone()).collect();
    let mut stale = Vec::new();
    for ((env, _), text) in maybe.into_iter().zip(sd.read_files(&files).await?) {
        if let Some(text) = text {
            let none = crate::resource::Content::kube(serde_json::json!({}));
            let found = units::live_env_file(stack, &none, &text);
            if found.owned {
                stale.push((env, found));
            }
        }
    }
    live.objects.extend(stale);
    Ok(())
}
