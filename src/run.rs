//! Wiring: parse the command line, call the engine ([`plan::build`], [`apply::run`]), hand the
//! result to a view, pick the exit code. Nothing here decides anything about the stack.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use tracing::field::Empty;

use crate::apply;
use crate::backend::kube::Connect;
use crate::cli::{
    ApplyArgs, Cli, Command, ForceUnlockArgs, Format, PlanArgs, PlaneArg, RenderArgs, SelectArgs,
};
use crate::error::Error;
use crate::lock;
use crate::output_dir;
use crate::plan::saved::{self, MadeWith, SavedPlan};
use crate::plan::{self, Against, Observe, Plan, Secrets, Selection, Sources};
use crate::resource::{Desired, ResourceId};
use crate::stack::{self, LoadedStack, Plane};
use crate::view::{self, Styles};

/// Exit code: changes are present (`--detailed-exitcode`).
const EXIT_CHANGES: u8 = 2;

/// Exit code: changes are present and the server refuses some of them in the dry run
/// (`plan --server-dry-run --detailed-exitcode`; without `--detailed-exitcode`, 1).
const EXIT_REFUSED: u8 = 3;

/// Run labctl with the process's arguments.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Agent(_)) {
        crate::plan::exit_frees_memory();
    }
    if reads_live_state(&cli.command) {
        release_huge_pages();
    }
    let telemetry = match &cli.command {
        Command::Plan(_) | Command::Apply(_) => crate::telemetry::init(
            crate::telemetry::Options {
                service: "labctl",
                endpoint: None,
                stderr: false,
                host: None,
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

/// Whether [`hold_huge_pages`] disabled transparent huge pages, for [`release_huge_pages`].
static HUGE_PAGES_HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Disable transparent huge pages for this process until the command is known; `main.rs` calls
/// this before Rust's own start-up, which already allocates.
///
/// The allocator (mimalloc) asks the kernel to back its memory with huge pages. A plan of 1,000
/// live objects touches about 40 MB for the first time: in 4 KiB pages that is 9,000 page faults
/// and a fifth of its CPU time, in 2 MiB pages 600 faults. But a 2 MiB page is resident as soon
/// as one byte of it is, which would double an agent's resident set and push an offline plan of
/// 1,000 objects past its 50 MB. So only a command that reads live state gets them back. When
/// the process already has them disabled (by its parent), that choice stands. Must not
/// allocate: nothing is set up yet.
pub extern "C" fn hold_huge_pages() {
    #[cfg(target_os = "linux")]
    if rustix::thread::transparent_huge_pages_are_disabled().is_ok_and(|off| !off)
        && rustix::thread::disable_transparent_huge_pages(true).is_ok()
    {
        HUGE_PAGES_HELD.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Give huge pages back after [`hold_huge_pages`]. Child processes (git) inherit the flag, so
/// they too get the system's setting back.
fn release_huge_pages() {
    #[cfg(target_os = "linux")]
    if HUGE_PAGES_HELD.swap(false, std::sync::atomic::Ordering::Relaxed) {
        // Failing leaves small pages: slower, nothing worse.
        let _ = rustix::thread::disable_transparent_huge_pages(false);
    }
}

/// A command that builds the live state of a cluster or host in memory: a plan that is not
/// offline nor against a git revision, and an apply.
fn reads_live_state(command: &Command) -> bool {
    match command {
        Command::Plan(args) => !args.offline && args.base.is_none(),
        Command::Apply(_) => true,
        _ => false,
    }
}

fn dispatch(cli: &Cli) -> Result<ExitCode, Error> {
    let out_styles = Styles::detect(cli.no_color, std::io::stdout().is_terminal());
    match &cli.command {
        Command::Validate => {
            let loaded = stack::load(&cli.stack)?;
            let templates = crate::render::Templates::for_stack_dir(loaded.dir())?;
            let asked = crate::render::secrets_asked(&loaded.stack, &templates, None)?;
            for w in stack::check_secrets(&loaded, &asked, &crate::secrets::process_env)? {
                eprintln!("warning: {w}");
            }
            let desired =
                crate::render::render(&loaded.stack, &templates, &Secrets::redacted(), None)?;
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
        Command::ForceUnlock(args) => force_unlock_cmd(cli, args),
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

/// The secrets a command renders with: read from their sources ([`crate::secrets::for_stack`]),
/// or none at all, redacted, for output that compares or shows no values.
fn secrets_for(
    rt: &tokio::runtime::Runtime,
    loaded: &LoadedStack,
    templates: &crate::render::Templates,
    plane: Option<Plane>,
    redacted: bool,
) -> Result<Secrets, Error> {
    if redacted {
        return Ok(Secrets::redacted());
    }
    rt.block_on(crate::secrets::for_stack(
        loaded,
        templates,
        plane,
        &crate::secrets::process_env,
    ))
}

fn selection(a: &SelectArgs) -> Selection {
    Selection {
        targets: a.target.clone(),
        excludes: a.exclude.clone(),
    }
}

/// The hash a saved plan records of the stack file and its templates.
fn stack_sha(loaded: &LoadedStack) -> Result<String, Error> {
    let text = std::fs::read(&loaded.path).map_err(|source| Error::Read {
        path: loaded.path.clone(),
        source,
    })?;
    let templates = crate::render::Templates::for_stack_dir(loaded.dir())?;
    Ok(saved::stack_hash(&text, &templates))
}

fn plane(p: Option<PlaneArg>) -> Option<Plane> {
    p.map(|p| match p {
        PlaneArg::Kube => Plane::Kube,
        PlaneArg::Systemd => Plane::Systemd,
    })
}

fn render_cmd(cli: &Cli, args: &RenderArgs) -> Result<ExitCode, Error> {
    let loaded = stack::load(&cli.stack)?;
    let templates = crate::render::Templates::for_stack_dir(loaded.dir())?;
    let secrets = secrets_for(
        &runtime()?,
        &loaded,
        &templates,
        plane(args.plane),
        args.redact,
    )?;
    let desired = crate::render::render(&loaded.stack, &templates, &secrets, plane(args.plane))?;
    let name = &loaded.stack.stack.name;
    match args.dir() {
        Some(dir) => {
            if args.output_deprecated.is_some() {
                eprintln!("{}", crate::cli::RENDER_O_DEPRECATED);
            }
            let files: Vec<(String, String)> = (desired.objects.iter())
                .map(|(id, o)| (render_path(id), rendered_text(name, o)))
                .collect();
            let scope: &[&str] = match args.plane {
                None => &["kube/", "systemd/"],
                Some(PlaneArg::Kube) => &["kube/"],
                Some(PlaneArg::Systemd) => &["systemd/"],
            };
            eprint!("{}", output_dir::write(dir, name, scope, &files)?);
        }
        None => {
            let mut out = String::new();
            for (id, o) in &desired.objects {
                out.push_str(&format!(
                    "---\n# Source: {}\n{}",
                    render_path(id),
                    rendered_text(name, o)
                ));
            }
            print(&out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An object's text as `render` writes it: an env file as the file itself.
fn rendered_text(stack: &str, o: &crate::resource::DesiredObject) -> String {
    if matches!(o.id, ResourceId::EnvFile { .. })
        && let Some(env) = o.content.as_kube().and_then(|v| v.get("env")?.as_object())
    {
        let vars = env
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        return crate::render::env_file_text(stack, &vars);
    }
    o.content.text()
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
        ResourceId::EnvFile { path, .. } => {
            format!("systemd/env/{}", path.rsplit('/').next().unwrap_or(path))
        }
    }
}

/// How the command line reaches the live planes.
fn observe(cli: &Cli, user: bool, server_dry_run: bool, force_conflicts: bool) -> Against {
    let cluster = cli.cluster();
    Against::Live(Observe {
        kube: Connect {
            kubeconfig: cluster.kubeconfig,
            context: cluster.context,
        },
        user,
        server_dry_run,
        force_conflicts,
    })
}

/// The root span of a command: `labctl plan` or `labctl apply`, a child of the caller's trace
/// when `TRACEPARENT` is set (as CI systems do).
fn root_span(name: &'static str, loaded: &LoadedStack, p: Option<Plane>) -> tracing::Span {
    let planes = p.map_or_else(|| "kube,systemd".to_string(), |p| p.to_string());
    let stack = loaded.stack.stack.name.as_str();
    let span = match name {
        "labctl apply" => tracing::info_span!(
            "labctl apply",
            labctl.stack = stack,
            labctl.planes = planes,
            labctl.add = Empty,
            labctl.change = Empty,
            labctl.destroy = Empty,
            error.message = Empty
        ),
        _ => tracing::info_span!(
            "labctl plan",
            labctl.stack = stack,
            labctl.planes = planes,
            labctl.add = Empty,
            labctl.change = Empty,
            labctl.destroy = Empty
        ),
    };
    crate::telemetry::set_parent_from_env(&span);
    span
}

/// Build the plan under `span`, record its summary there, and say on stderr what the plan
/// carries for the reader besides changes (planes left out, `-v` costs).
fn build(
    cli: &Cli,
    rt: &tokio::runtime::Runtime,
    span: &tracing::Span,
    loaded: &LoadedStack,
    options: &plan::Options,
    selection: &Selection,
) -> Result<Plan, Error> {
    let templates = crate::render::Templates::for_stack_dir(loaded.dir())?;
    // Only a plan against the live planes compares (and so needs) secret values.
    let redacted = !matches!(options.against, Against::Live(_));
    let secrets = secrets_for(rt, loaded, &templates, options.plane, redacted)?;
    let sources = Sources { templates, secrets };
    let plan = rt.block_on(plan::build(&loaded.stack, &sources, options))?;
    let plan = plan::select(plan, selection)?;
    let s = plan.summary();
    span.record("labctl.add", s.add);
    span.record("labctl.change", s.change);
    span.record("labctl.destroy", s.destroy);
    for w in &plan.warnings {
        eprintln!("{w}");
    }
    if cli.verbose {
        for d in &plan.details {
            eprintln!("{d}");
        }
        for c in &plan.costs {
            eprintln!("{}", view::render_cost(c));
        }
    }
    Ok(plan)
}

fn plan_cmd(cli: &Cli, args: &PlanArgs, styles: Styles) -> Result<ExitCode, Error> {
    let loaded = stack::load(&cli.stack)?;
    let against = if let Some(rev) = &args.base {
        Against::Revision(Box::new(crate::git::stack_at(&cli.stack, rev)?))
    } else if args.offline {
        Against::Nothing
    } else {
        observe(cli, args.user, args.server_dry_run, false)
    };
    let options = plan::Options {
        plane: plane(args.plane),
        against,
        prune_volumes: args.prune_volumes,
    };
    let span = root_span("labctl plan", &loaded, options.plane);
    let _entered = span.enter();
    let plan = build(
        cli,
        &runtime()?,
        &span,
        &loaded,
        &options,
        &selection(&args.select),
    )?;
    if let Some(out) = &args.out {
        let cluster = cli.cluster();
        let made_with = MadeWith {
            stack_file: cli.stack.clone(),
            plane: options.plane.map(|p| p.to_string()),
            user: args.user,
            kubeconfig: cluster.kubeconfig,
            context: cluster.context,
            server_dry_run: args.server_dry_run,
            prune_volumes: args.prune_volumes,
            targets: args.select.target.clone(),
            excludes: args.select.exclude.clone(),
        };
        saved::write(
            out,
            &saved::to_json(&plan, &stack_sha(&loaded)?, &made_with),
        )?;
        eprintln!(
            "Saved this plan to `{}`: `labctl apply {}` applies exactly it, or refuses if \
             anything it read has changed.",
            out.display(),
            out.display()
        );
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
    // A plan the server refuses would fail: never a clean exit.
    let code = if plan.refused().next().is_some() {
        ExitCode::from(if args.detailed_exitcode {
            EXIT_REFUSED
        } else {
            1
        })
    } else if args.detailed_exitcode && !plan.is_empty() {
        ExitCode::from(EXIT_CHANGES)
    } else {
        ExitCode::SUCCESS
    };
    plan::drop_later(plan);
    Ok(code)
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

/// The CLI's runtime: one thread is plenty for a command. The engine itself creates none.
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::backend("labctl", "start the async runtime", e))
}

/// A saved plan being applied: the file and what it holds.
struct FromFile<'a> {
    path: &'a std::path::Path,
    saved: SavedPlan,
}

fn apply_cmd(cli: &Cli, args: &ApplyArgs, styles: Styles) -> Result<ExitCode, Error> {
    // A saved plan is read first: one from another labctl is refused before anything else.
    let from_file = match &args.plan_file {
        Some(path) => Some(FromFile {
            path,
            saved: SavedPlan::read(path)?,
        }),
        None => None,
    };
    let loaded = stack::load(&cli.stack)?;
    let (options, select) = match &from_file {
        Some(f) => {
            let m = &f.saved.made_with;
            let plane = match m.plane.as_deref() {
                Some("kube") => Some(Plane::Kube),
                Some("systemd") => Some(Plane::Systemd),
                _ => None,
            };
            let options = plan::Options {
                plane,
                against: Against::Live(Observe {
                    kube: Connect {
                        kubeconfig: m.kubeconfig.clone(),
                        context: m.context.clone(),
                    },
                    user: m.user,
                    server_dry_run: m.server_dry_run,
                    force_conflicts: args.force_conflicts,
                }),
                prune_volumes: m.prune_volumes,
            };
            (options, f.saved.selection())
        }
        None => (
            plan::Options {
                plane: plane(args.plane),
                against: observe(cli, args.user, args.server_dry_run, args.force_conflicts),
                prune_volumes: args.prune_volumes,
            },
            selection(&args.select),
        ),
    };
    let span = root_span("labctl apply", &loaded, options.plane);
    let _entered = span.enter();
    let result = apply_traced(
        cli,
        args,
        styles,
        &loaded,
        &options,
        &select,
        from_file.as_ref(),
        &span,
    );
    if let Err(e) = &result {
        span.record("error.message", e.report());
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn apply_traced(
    cli: &Cli,
    args: &ApplyArgs,
    styles: Styles,
    loaded: &LoadedStack,
    options: &plan::Options,
    select: &Selection,
    from_file: Option<&FromFile<'_>>,
    span: &tracing::Span,
) -> Result<ExitCode, Error> {
    // One writer at a time: held from before the plan is made until the apply ends.
    let mut spec = lock::Spec::for_plan(&loaded.stack, options)?;
    spec.lease = args.lock_lease;
    let command: Vec<String> = std::env::args().collect();
    let holder = lock::Holder::this_process(&command.join(" "));
    let held = lock::acquire(&spec, &holder, args.lock_timeout)?;
    let rt = runtime()?;
    let mut plan = build(cli, &rt, span, loaded, options, select)?;
    if let Some(f) = from_file {
        saved::check(f.path, &f.saved, &stack_sha(loaded)?, &mut plan)?;
    }
    // The plan is for the reader; a reader gone (`apply --yes | head`) does not cancel the apply.
    print(&view::render_plan_human(&plan, styles)).or_else(reader_gone)?;
    if plan.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let opts = apply::Options {
        adopt: args.adopt,
        allow_replace: args.allow_replace,
        force_conflicts: args.force_conflicts,
        wait: (!args.no_wait).then_some(args.wait_timeout),
        settle: args.settle,
        concurrency: args.concurrency,
    };
    apply::check(&plan, &opts)?;
    // A saved plan was reviewed when it was made: applying it is the confirmation.
    if !args.yes && from_file.is_none() {
        confirm()?;
    }
    let mut events = view::Terminal::new(std::io::stderr().is_terminal(), cli.verbose);
    let outcome = rt.block_on(apply::run(&plan, &opts, &mut events));
    if let Some(why) = held.lost() {
        eprintln!("warning: {why}: another writer may have run at the same time");
    }
    let outcome = outcome?;
    let s = outcome.summary;
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
        return Err(Error::Refused {
            what: "apply without confirmation".into(),
            why: "stdin is not a terminal".into(),
            hint: "pass `--yes` to apply".into(),
        });
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

fn force_unlock_cmd(cli: &Cli, args: &ForceUnlockArgs) -> Result<ExitCode, Error> {
    let loaded = stack::load(&cli.stack)?;
    let options = plan::Options {
        plane: plane(args.plane),
        against: observe(cli, args.user, false, false),
        prune_volumes: false,
    };
    let spec = lock::Spec::for_plan(&loaded.stack, &options)?;
    let done = runtime()?.block_on(lock::force_unlock(&spec))?;
    print(&(done.lines.join("\n") + "\n"))?;
    Ok(ExitCode::SUCCESS)
}
