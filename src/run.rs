//! Wiring: parse the command line, call the library, print through the views, pick the exit code.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::apply::{self, Progress};
use crate::backend::Stats;
use crate::backend::kube::{Connect, Kube};
use crate::backend::systemd::{Systemd, Target};
use crate::cli::{ApplyArgs, Cli, Command, Format, PlanArgs, PlaneArg, RenderArgs};
use crate::error::Error;
use crate::output_dir;
use crate::plan::{self, Live, Plan};
use crate::render::{self, Templates};
use crate::resource::{Desired, ResourceId};
use crate::stack::{self, LoadedStack, Plane};
use crate::view::{self, Styles};

/// Exit code: changes are present (`--detailed-exitcode`).
const EXIT_CHANGES: u8 = 2;

/// Run labctl with the process's arguments.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = match &cli.command {
        Command::Plan(_) | Command::Apply(_) => crate::telemetry::init(
            crate::telemetry::Options {
                service: "labctl",
                endpoint: None,
                stderr: false,
            },
            || stack::load(&cli.stack).ok().map(|l| l.stack.stack.name),
        ),
        _ => crate::telemetry::Telemetry::off(),
    };
    let err_styles = Styles::detect(cli.no_color, std::io::stderr().is_terminal());
    let code = match dispatch(&cli) {
        Ok(code) => code,
        // The reader went away (`labctl plan | head`): stop quietly, as every Unix tool does.
        Err(Error::Write { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = std::io::stderr().write_all(view::render_error(&e, err_styles).as_bytes());
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

/// A command's root span (`labctl plan`, `labctl apply`), child of the caller's `TRACEPARENT`.
fn root_span(name: &'static str, loaded: &LoadedStack) -> tracing::Span {
    use tracing::field::Empty;
    let span = match name {
        "labctl apply" => {
            tracing::info_span!("labctl apply", labctl.stack = %loaded.stack.stack.name, labctl.planes = Empty, labctl.add = Empty, labctl.change = Empty, labctl.destroy = Empty, error.message = Empty)
        }
        _ => {
            tracing::info_span!("labctl plan", labctl.stack = %loaded.stack.stack.name, labctl.planes = Empty, labctl.add = Empty, labctl.change = Empty, labctl.destroy = Empty)
        }
    };
    crate::telemetry::set_parent_from_env(&span);
    span
}

/// Record the planes planned and the plan's summary on the root span.
fn record_plan(span: &tracing::Span, desired: &Desired, plan: &Plan) {
    let planes: Vec<&str> = [(Plane::Kube, "kube"), (Plane::Systemd, "systemd")]
        .into_iter()
        .filter(|(p, _)| count(desired, *p) > 0)
        .map(|(_, n)| n)
        .collect();
    let s = plan.summary();
    span.record("labctl.planes", planes.join(","));
    span.record("labctl.add", s.add);
    span.record("labctl.change", s.change);
    span.record("labctl.destroy", s.destroy);
}

fn dispatch(cli: &Cli) -> Result<ExitCode, Error> {
    let out_styles = Styles::detect(cli.no_color, std::io::stdout().is_terminal());
    match &cli.command {
        Command::Validate => {
            let loaded = stack::load(&cli.stack)?;
            let desired = desired_for(&loaded)?;
            eprintln!(
                "`{}` is valid: {} kube objects, {} units",
                cli.stack.display(),
                count(&desired, Plane::Kube),
                count(&desired, Plane::Systemd)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Render(args) => render_cmd(cli, args),
        Command::Plan(args) => plan_cmd(cli, args, out_styles),
        Command::Apply(args) => apply_cmd(cli, args, out_styles),
        Command::Agent(args) => Ok(crate::agent::main(args)),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "labctl", &mut out);
            print(&String::from_utf8_lossy(&out))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn count(d: &Desired, plane: Plane) -> usize {
    d.objects.keys().filter(|id| id.plane() == plane).count()
}

/// Secrets come from `LABCTL_SECRET_<NAME>` (`postgres-password` → `LABCTL_SECRET_POSTGRES_PASSWORD`).
fn env_secret(name: &str) -> Option<String> {
    let var = format!(
        "LABCTL_SECRET_{}",
        name.to_ascii_uppercase().replace('-', "_")
    );
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

fn desired_for(loaded: &LoadedStack) -> Result<Desired, Error> {
    let templates = Templates::for_stack_dir(loaded.dir())?;
    render::render(&loaded.stack, &templates, &env_secret)
}

fn keep_plane(d: &mut Desired, plane: Option<PlaneArg>) {
    if let Some(p) = plane {
        let want = match p {
            PlaneArg::Kube => Plane::Kube,
            PlaneArg::Systemd => Plane::Systemd,
        };
        d.objects.retain(|id, _| id.plane() == want);
    }
}

fn render_cmd(cli: &Cli, args: &RenderArgs) -> Result<ExitCode, Error> {
    let loaded = stack::load(&cli.stack)?;
    let mut desired = desired_for(&loaded)?;
    keep_plane(&mut desired, args.plane);
    match args.dir() {
        Some(dir) => {
            if args.output_deprecated.is_some() {
                eprintln!("{}", crate::cli::RENDER_O_DEPRECATED);
            }
            let files: Vec<(String, String)> = (desired.objects.iter())
                .map(|(id, o)| (render_path(id), o.content.text().to_string()))
                .collect();
            let scope: &[&str] = match args.plane {
                None => &["kube/", "systemd/"],
                Some(PlaneArg::Kube) => &["kube/"],
                Some(PlaneArg::Systemd) => &["systemd/"],
            };
            let name = &loaded.stack.stack.name;
            eprint!("{}", output_dir::write(dir, name, scope, &files)?);
        }
        None => {
            let mut out = String::new();
            for (id, o) in &desired.objects {
                out.push_str(&format!(
                    "---\n# Source: {}\n{}",
                    render_path(id),
                    o.content.text()
                ));
            }
            print(&out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where `render --output-dir` puts an object, relative to the output folder.
pub fn render_path(id: &ResourceId) -> String {
    match id {
        ResourceId::Kube {
            namespace,
            kind,
            name,
            ..
        } => {
            format!(
                "kube/{}/{}-{name}.yaml",
                namespace.as_deref().unwrap_or("_cluster"),
                kind.to_ascii_lowercase()
            )
        }
        ResourceId::Systemd { unit } => format!("systemd/{unit}"),
    }
}

fn plan_cmd(cli: &Cli, args: &PlanArgs, styles: Styles) -> Result<ExitCode, Error> {
    let loaded = stack::load(&cli.stack)?;
    let root = root_span("labctl plan", &loaded);
    let _root = root.enter();
    let mut desired = desired_for(&loaded)?;
    keep_plane(&mut desired, args.plane);
    let live = if let Some(rev) = &args.base {
        match crate::git::stack_at(&cli.stack, rev)? {
            Some((base_stack, templates)) => {
                let mut base = render::render(&base_stack, &templates, &env_secret)?;
                keep_plane(&mut base, args.plane);
                Live::from_desired(&base)
            }
            None => Live::default(),
        }
    } else if args.offline {
        Live::default()
    } else {
        plan::kube::prepare_all(&mut desired);
        let rt = runtime()?;
        let how = How {
            plane: args.plane,
            user: args.user,
            server_dry_run: args.server_dry_run,
        };
        observe(cli, &loaded, &mut desired, how, &rt)?.live
    };
    let mut plan = plan_of(&loaded, &desired, &live, args.prune_volumes);
    record_plan(&root, &desired, &plan);
    if args.base.is_none() && !args.offline {
        // Only against the live world: CI plans (`--offline`, `--base`) run without secrets.
        plan::kube::note_unset_secrets(&mut plan, &desired);
    }
    let base = match (&args.base, args.offline) {
        (Some(rev), _) => view::Base::Rev(rev),
        (None, true) => view::Base::Empty,
        (None, false) => view::Base::Live,
    };
    let text = match args.output {
        Format::Human => view::render_plan_human_against(&plan, base, styles),
        Format::Json => view::render_plan_json(&plan),
        Format::Markdown => view::render_plan_markdown(&plan, base),
    };
    print(&text)?;
    if args.detailed_exitcode && !plan.is_empty() {
        return Ok(ExitCode::from(EXIT_CHANGES));
    }
    Ok(ExitCode::SUCCESS)
}

/// The plan: the pure diff, with volumes and protected components kept unless asked.
fn plan_of(loaded: &LoadedStack, desired: &Desired, live: &Live, prune_volumes: bool) -> Plan {
    let mut plan = plan::diff(desired, live);
    let protected = plan::kube::protected_components(&loaded.stack);
    plan::kube::keep_volumes(&mut plan, &protected, prune_volumes);
    plan
}

/// `Ok` when the error is only that stdout's reader closed the pipe.
fn reader_gone(e: Error) -> Result<(), Error> {
    match e {
        Error::Write { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        e => Err(e),
    }
}

fn print(text: &str) -> Result<(), Error> {
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|source| Error::Write {
            path: "<stdout>".into(),
            source,
        })
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Backend {
            plane: "labctl",
            step: "start the async runtime".into(),
            message: e.to_string(),
        })
}

/// What to observe, and how.
#[derive(Clone, Copy)]
struct How {
    plane: Option<PlaneArg>,
    user: bool,
    server_dry_run: bool,
}

/// The live world as the backends see it, and the connections apply goes on with.
struct Observed {
    live: Live,
    kube: Option<Kube>,
    systemd: Option<Systemd>,
}

/// Observe the planes `how.plane` selects, cluster first, into one live set.
fn observe(
    cli: &Cli,
    loaded: &LoadedStack,
    desired: &mut Desired,
    how: How,
    rt: &tokio::runtime::Runtime,
) -> Result<Observed, Error> {
    let mut observed = Observed {
        live: Live::default(),
        kube: None,
        systemd: None,
    };
    let cluster = cli.cluster();
    let connect = Connect {
        kubeconfig: cluster.kubeconfig,
        context: cluster.context,
    };
    // A host-only machine has no cluster configured at all: without `--plane kube` that is said,
    // not an error. A configured cluster that cannot be reached is an error.
    if how.plane.is_none() && !connect.configured() {
        eprintln!(
            "kube: not planned: no cluster configured (`--kubeconfig`, KUBECONFIG, ~/.kube/config \
             or an in-cluster service account); `--plane systemd` silences this"
        );
        desired.objects.retain(|id, _| id.plane() != Plane::Kube);
    } else if how.plane != Some(PlaneArg::Systemd) {
        let started = std::time::Instant::now();
        let span = tracing::info_span!(
            "observe",
            labctl.plane = "kube",
            labctl.requests = tracing::field::Empty
        );
        let _span = span.enter();
        let k = rt.block_on(Kube::connect(&connect))?;
        let live = rt.block_on(apply::kube::observe(
            &k,
            &loaded.stack.stack.name,
            desired,
            how.server_dry_run,
        ))?;
        span.record("labctl.requests", k.stats().calls);
        if cli.verbose {
            eprintln!("{}", kube_line(&k, Stats::default(), started, "observe"));
        }
        observed.live.objects.extend(live.objects);
        observed.kube = Some(k);
    }
    if how.plane != Some(PlaneArg::Kube) {
        let host = &loaded.stack.host;
        let target = Target::resolve(host.scope, how.user, host.unit_dir.as_deref())?;
        let span = tracing::info_span!(
            "observe",
            labctl.plane = "systemd",
            labctl.requests = tracing::field::Empty
        );
        let _span = span.enter();
        let sd = rt.block_on(Systemd::connect(target))?;
        let live = rt.block_on(sd.observe(&loaded.stack.stack.name, desired))?;
        span.record("labctl.requests", sd.stats().calls);
        if cli.verbose {
            eprintln!("{}", sd.stats().line("systemd", "D-Bus calls"));
        }
        observed.live.objects.extend(live.objects);
        observed.systemd = Some(sd);
    }
    Ok(observed)
}

/// `kube: 12 API requests in 85 ms (observe)`: requests since `before`, wall time since `started`.
fn kube_line(k: &Kube, before: Stats, started: std::time::Instant, phase: &str) -> String {
    let mut spent = k.stats().since(before);
    spent.elapsed = started.elapsed();
    format!("{} ({phase})", spent.line("kube", "API requests"))
}

fn apply_cmd(cli: &Cli, args: &ApplyArgs, styles: Styles) -> Result<ExitCode, Error> {
    let loaded = stack::load(&cli.stack)?;
    let root = root_span("labctl apply", &loaded);
    let _root = root.enter();
    let result = apply_traced(cli, args, styles, loaded, &root);
    if let Err(e) = &result {
        root.record("error.message", e.to_string());
    }
    result
}

fn apply_traced(
    cli: &Cli,
    args: &ApplyArgs,
    styles: Styles,
    loaded: LoadedStack,
    root: &tracing::Span,
) -> Result<ExitCode, Error> {
    let mut desired = desired_for(&loaded)?;
    keep_plane(&mut desired, args.plane);
    plan::kube::prepare_all(&mut desired);
    let rt = runtime()?;
    let how = How {
        plane: args.plane,
        user: args.user,
        server_dry_run: args.server_dry_run,
    };
    let observed = observe(cli, &loaded, &mut desired, how, &rt)?;
    let mut plan = plan_of(&loaded, &desired, &observed.live, args.prune_volumes);
    plan::kube::note_unset_secrets(&mut plan, &desired);
    record_plan(root, &desired, &plan);
    // The plan is for the reader; a reader gone (`apply --yes | head`) does not cancel the apply.
    print(&view::render_plan_human(&plan, styles)).or_else(reader_gone)?;
    if plan.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let kube_opts = apply::kube::Options {
        force_conflicts: args.force_conflicts,
        allow_replace: args.allow_replace,
    };
    apply::check_adopt(&plan, args.adopt)?;
    apply::kube::check(&plan, &desired, kube_opts)?;
    if !args.yes {
        confirm()?;
    }
    // The cluster first: host services talk to what runs there.
    if let Some(k) = &observed.kube {
        let mut report = |line: String| eprintln!("{line}");
        let (before, started) = (k.stats(), std::time::Instant::now());
        let result = rt.block_on(apply::kube::apply(
            &plan,
            &desired,
            k,
            kube_opts,
            &mut report,
        ));
        if cli.verbose {
            eprintln!("{}", kube_line(k, before, started, "apply"));
        }
        let workloads = result?;
        if !args.no_wait {
            let (before, started) = (k.stats(), std::time::Instant::now());
            let tty = std::io::stderr().is_terminal();
            let result = rt.block_on(apply::kube::wait(
                k,
                &workloads,
                args.wait_timeout,
                tty,
                &mut report,
            ));
            if cli.verbose {
                eprintln!("{}", kube_line(k, before, started, "wait"));
            }
            result?;
        }
    }
    if let Some(sd) = &observed.systemd {
        let before = sd.stats();
        let steps = apply::systemd::Steps::of(&plan);
        let progress = Progress::new(steps.len(), std::io::stderr().is_terminal());
        let result = rt.block_on(apply::systemd::apply(&plan, sd, &progress, args.settle));
        progress.finish();
        if cli.verbose {
            let spent = sd.stats().since(before);
            eprintln!("{}", spent.line("systemd", "D-Bus calls to apply"));
        }
        result?;
    }
    let s = plan.summary();
    eprintln!(
        "Apply complete: {} added, {} changed, {} destroyed.",
        s.add, s.change, s.destroy
    );
    Ok(if args.detailed_exitcode {
        ExitCode::from(EXIT_CHANGES)
    } else {
        ExitCode::SUCCESS
    })
}

/// Ask on the terminal; without one, refuse rather than guess.
fn confirm() -> Result<(), Error> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage("refusing to apply without confirmation: stdin is not a terminal; pass `--yes` to apply".into()));
    }
    eprint!("\nApply these changes? Only `yes` is accepted: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|source| Error::Read {
            path: "<stdin>".into(),
            source,
        })?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(Error::Usage("apply cancelled: nothing was changed".into()))
    }
}
