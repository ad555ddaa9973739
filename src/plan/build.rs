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

use std::time::Instant;

use tracing::Instrument as _;
use tracing::field::Empty;

use super::{Cost, Live, Plan, PlaneTarget, diff, kube, units};
use crate::backend::Stats;
use crate::backend::kube::{Connect, Kube};
use crate::backend::systemd::{Systemd, Target};
use crate::error::Error;
use crate::render::{self, Templates};
use crate::resource::Desired;
use crate::stack::{LoadedStack, Plane, Stack};

pub use crate::render::Secrets;

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
    /// How to reach the cluster.
    pub kube: Connect,
    /// Use the calling user's systemd manager whatever `host.scope` says (`--user`).
    pub user: bool,
    /// Confirm each owned kube object that differs locally with a server-side dry run.
    pub server_dry_run: bool,
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
    let (mut desired, asked) =
        render::render_asked(stack, &sources.templates, &sources.secrets, options.plane)?;
    kube::prepare_all(&mut desired);
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
            // A host-only machine has no cluster configured at all: without `--plane kube` that
            // is said, not an error. A configured cluster that cannot be reached is an error.
            if options.plane.is_none() && !how.kube.configured() {
                warnings.push(
                    "kube: not planned: no cluster configured (`--kubeconfig`, KUBECONFIG, \
                     ~/.kube/config or an in-cluster service account); `--plane systemd` \
                     silences this"
                        .to_string(),
                );
                desired.retain_plane(Some(Plane::Systemd));
            } else if options.plane != Some(Plane::Systemd) {
                let (objects, cost) = observe_kube(name, &desired, how).await?;
                live.objects.extend(objects.objects);
                costs.push(cost);
                targets.push(PlaneTarget::Kube(how.kube.clone()));
            }
            if options.plane != Some(Plane::Kube) {
                let host = &stack.host;
                let target = Target::resolve(host.scope, how.user, host.unit_dir.as_deref())?;
                let (objects, cost) = observe_systemd(name, &desired, target.clone()).await?;
                live.objects.extend(objects.objects);
                costs.push(cost);
                targets.push(PlaneTarget::Systemd(target));
            }
            let mut plan = plan_of(stack, &desired, &live, options);
            plan.targets = targets;
            plan.warnings = warnings;
            plan.costs = costs;
            plan
        }
    };
    if sources.secrets.is_redacted() {
        plan.unread_secrets = asked.into_keys().collect();
    }
    plan.stack = name.clone();
    Ok(plan)
}

/// The pure part: diff, then volumes and protected components kept unless asked.
fn plan_of(stack: &Stack, desired: &Desired, live: &Live, options: &Options) -> Plan {
    let mut plan = diff(desired, live);
    units::env_file_impacts(&mut plan, desired);
    kube::keep_volumes(&mut plan, &stack.protected(), options.prune_volumes);
    plan
}

async fn observe_kube(
    stack: &str,
    desired: &Desired,
    how: &Observe,
) -> Result<(Live, Cost), Error> {
    let span = tracing::info_span!("observe", labctl.plane = "kube", labctl.requests = Empty);
    let started = Instant::now();
    let result = async {
        let k = Kube::connect(&how.kube).await?;
        let kinds = kube::kinds_to_observe(desired);
        let ids: Vec<_> = desired
            .objects
            .keys()
            .filter(|id| id.plane() == Plane::Kube)
            .cloned()
            .collect();
        let observed = k.observe(&kube::selector(stack), &kinds, &ids).await?;
        let dry_run: Option<&dyn kube::DryRun> = how.server_dry_run.then_some(&k);
        let live = kube::live(&observed, desired, stack, dry_run).await;
        let mut stats = k.stats();
        stats.elapsed = started.elapsed();
        Ok::<_, Error>((live, stats))
    }
    .instrument(span.clone())
    .await;
    let (live, stats) = result?;
    span.record("labctl.requests", stats.calls);
    Ok((live, cost(Plane::Kube, stats)))
}

async fn observe_systemd(
    stack: &str,
    desired: &Desired,
    target: Target,
) -> Result<(Live, Cost), Error> {
    let span = tracing::info_span!("observe", labctl.plane = "systemd", labctl.requests = Empty);
    let result = async {
        let sd = Systemd::connect(target).await?;
        let files = sd.unit_files()?;
        let names = units::units_to_observe(stack, desired, &files);
        let observed = sd.observe(&names).await?;
        let mut live = units::live_units(stack, &files, observed);
        observe_env_files(stack, desired, sd.target(), &mut live)?;
        Ok::<_, Error>((live, sd.stats()))
    }
    .instrument(span.clone())
    .await;
    let (live, stats) = result?;
    span.record("labctl.requests", stats.calls);
    Ok((live, cost(Plane::Systemd, stats)))
}

/// Read the env files the stack wants from where the manager looks for them; a missing one is
/// not live.
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
    Ok(())
}

fn cost(plane: Plane, stats: Stats) -> Cost {
    Cost {
        plane,
        phase: "observe",
        stats,
    }
}
