//! Wiring: parse the command line, call the engine ([`plan::build`], [`apply::run`]), hand the
//! result to a view, pick the exit code. Nothing here decides anything about the stack.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::CommandFactory;
use tracing::field::Empty;

mod console;

use console::Console;

use crate::apply;
use crate::backend::kube::{Cluster, Connect};
use crate::cli::{
    ApplyArgs, BootstrapArgs, Cli, Command, ForceUnlockArgs, Format, HistoryArgs, HistoryFormat,
    PlanArgs, PlaneArg, RenderArgs, RollbackArgs, SelectArgs,
};
use crate::error::Error;
use crate::generations::{self, Who};
use crate::lock;
use crate::ops::{self, ApplyRequest, LockRequest, PlanRequest, SavedRequest, StackSource};
use crate::output_dir;
use crate::plan::saved::{self, MadeWith, SavedPlan};
use crate::plan::{self, Against, Plan, Selection};
use crate::resource::Desired;
use crate::sensitive::Secrets;
use crate::stack::{self, Plane};
use crate::view::{self, Styles};

/// Exit code: changes are present (`--detailed-exitcode`).
const EXIT_CHANGES: u8 = 2;

/// Exit code: changes are present and the server refuses some of them in the dry run
/// (`plan --server-dry-run --detailed-exitcode`; without `--detailed-exitcode`, 1).
const EXIT_REFUSED: u8 = 3;

/// What the binary may do around a command that the library itself never does: process-wide
/// tuning of memory, which depends on how the process was started and what it runs. The library
/// behaves the same whether or not any of these run (the tests run none).
#[derive(Debug, Clone, Copy, Default)]
pub struct Hooks {
    /// An agent is up and steady: the collector after its first collection, the proxy once it
    /// serves. The work of starting is over and will not come back.
    pub agent_settled: Option<fn()>,
}

/// Run labctl's command line `cli`.
pub fn run(cli: Cli, hooks: Hooks) -> ExitCode {
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
    let code = match dispatch(&cli, hooks) {
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

fn dispatch(cli: &Cli, hooks: Hooks) -> Result<ExitCode, Error> {
    let out_styles = Styles::detect(cli.no_color, std::io::stdout().is_terminal());
    crate::failpoint::hit("command");
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
        Command::Bootstrap(args) => bootstrap_cmd(cli, args, out_styles),
        Command::ForceUnlock(args) => force_unlock_cmd(cli, args),
        Command::History(args) => history_cmd(cli, args),
        Command::Rollback(args) => rollback_cmd(cli, args, out_styles),
        Command::Agent(args) => Ok(crate::agent::main(args, hooks.agent_settled)),
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

fn render_cmd(cli: &Cli, args: &RenderArgs) -> Result<ExitCode, Error> {
    let loaded = stack::load(&cli.stack)?;
    let templates = crate::render::Templates::for_stack_dir(loaded.dir())?;
    let secrets = if args.redact {
        Secrets::redacted()
    } else {
        runtime()?.block_on(ops::read_secrets(&loaded, &templates, plane(args.plane)))?
    };
    let desired = crate::render::render(&loaded.stack, &templates, &secrets, plane(args.plane))?;
    let name = &loaded.stack.stack.name;
    match args.dir() {
        Some(dir) => {
            if args.output_deprecated.is_some() {
                eprintln!("{}", crate::cli::RENDER_O_DEPRECATED);
            }
            let files: Vec<(String, String)> = (desired.objects.iter())
                .map(|(id, o)| {
                    (
                        output_dir::render_path(id),
                        output_dir::rendered_text(name, o),
                    )
                })
                .collect();
            let scope: &[&str] = match args.plane {
                None => &["kube/", "systemd/", "hosts/"],
                Some(PlaneArg::Kube) => &["kube/"],
                Some(PlaneArg::Systemd) => &["systemd/", "hosts/"],
            };
            eprint!("{}", output_dir::write(dir, name, scope, &files)?);
        }
        None => {
            let mut out = String::new();
            for (id, o) in &desired.objects {
                out.push_str(&format!(
                    "---\n# Source: {}\n{}",
                    output_dir::render_path(id),
                    output_dir::rendered_text(name, o)
                ));
            }
            print(&out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn selection(a: &SelectArgs) -> Selection {
    Selection {
        targets: a.target.clone(),
        excludes: a.exclude.clone(),
    }
}

fn plane(p: Option<PlaneArg>) -> Option<Plane> {
    p.map(|p| match p {
        PlaneArg::Kube => Plane::Kube,
        PlaneArg::Systemd => Plane::Systemd,
    })
}

/// The cluster the command line names (`--kubeconfig`, `--context`), not connected yet.
fn cluster(cli: &Cli) -> Cluster {
    let c = cli.cluster();
    Cluster::new(Connect {
        kubeconfig: c.kubeconfig,
        context: c.context,
    })
}

/// The root span of a command: `labctl plan` or `labctl apply`, a child of the caller's trace
/// when `TRACEPARENT` is set (as CI systems do).
fn root_span(name: &'static str, stack: &str, p: Option<Plane>) -> tracing::Span {
    let planes = p.map_or_else(|| "kube,systemd".to_string(), |p| p.to_string());
    let span = match name {
        "labctl apply" => tracing::info_span!(
            "labctl apply",
            labctl.stack = stack,
            labctl.planes = planes,
            labctl.add = Empty,
            labctl.change = Empty,
            labctl.destroy = Empty,
            labctl.result = Empty,
            labctl.generation = Empty,
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

/// How an apply that returned `e` ended, as its span's `labctl.result` says it (the sync's words).
fn result_word(e: &Error) -> &'static str {
    match e {
        Error::RolledBack { .. } => "rolled-back",
        Error::Refused { .. } | Error::Locked { .. } => "refused",
        _ => "failed",
    }
}

fn record_summary(span: &tracing::Span, plan: &Plan) {
    let s = plan.summary();
    span.record("labctl.add", s.add);
    span.record("labctl.change", s.change);
    span.record("labctl.destroy", s.destroy);
}

/// The stack file, checked first (its problems come before anything else's), and its name.
fn load(cli: &Cli) -> Result<(StackSource, stack::LoadedStack), Error> {
    let loaded = stack::load(&cli.stack)?;
    Ok((StackSource::File(cli.stack.clone()), loaded))
}

fn plan_cmd(cli: &Cli, args: &PlanArgs, styles: Styles) -> Result<ExitCode, Error> {
    let (stack, loaded) = load(cli)?;
    let against = if let Some(rev) = &args.base {
        Against::Revision(Box::new(crate::git::stack_at(&cli.stack, rev)?))
    } else if args.offline {
        Against::Nothing
    } else {
        ops::live(cluster(cli), args.user, args.server_dry_run, false)
            .with_hosts_concurrency(args.hosts_concurrency)
    };
    let request = PlanRequest {
        stack,
        plane: plane(args.plane),
        against,
        selection: selection(&args.select),
        prune_volumes: args.prune_volumes,
    };
    let span = root_span("labctl plan", &loaded.stack.stack.name, request.plane);
    let _entered = span.enter();
    let mut console = Console::new(cli.verbose, styles);
    let planned = runtime()?.block_on(ops::plan(&request, &mut console))?;
    let plan = &planned.plan;
    record_summary(&span, plan);
    if let Some(out) = &args.out {
        let cluster = cli.cluster();
        let made_with = MadeWith {
            stack_file: cli.stack.clone(),
            plane: request.plane.map(|p| p.to_string()),
            user: args.user,
            kubeconfig: cluster.kubeconfig,
            context: cluster.context,
            server_dry_run: args.server_dry_run,
            prune_volumes: args.prune_volumes,
            targets: args.select.target.clone(),
            excludes: args.select.exclude.clone(),
        };
        let sha = ops::stack_hash(&planned.loaded, &planned.templates)?;
        saved::write(out, &saved::to_json(plan, &sha, &made_with))?;
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
        Format::Human => view::render_plan_human_against(plan, base, styles),
        Format::Json => view::render_plan_json(plan),
        Format::Markdown => view::render_plan_markdown(plan, base),
    };
    print(&text)?;
    // A host that could not be planned fails the run, after the plan of the others.
    if !plan.unreached.is_empty() {
        return Err(Error::Unreached {
            hosts: plan.unreached.clone(),
        });
    }
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
    plan::drop_later(planned);
    Ok(code)
}

fn print(text: &str) -> Result<(), Error> {
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|source| Error::Write {
            path: "<stdout>".into(),
            source,
        })
}

/// The CLI's runtime for a command that only reads: one thread is plenty. The engine itself
/// creates none.
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::backend("labctl", "start the async runtime", e))
}

/// The runtime of `apply`: the lock's Lease is renewed by a task while the main thread may wait
/// at the confirmation prompt, so that task needs a thread of its own.
fn apply_runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::backend("labctl", "start the async runtime", e))
}

fn apply_cmd(cli: &Cli, args: &ApplyArgs, styles: Styles) -> Result<ExitCode, Error> {
    // A saved plan is read first: one from another labctl is refused before anything else.
    let saved = match &args.plan_file {
        Some(path) => Some(SavedRequest {
            path: path.clone(),
            plan: SavedPlan::read(path)?,
        }),
        None => None,
    };
    let (stack, loaded) = load(cli)?;
    let plan_request = match &saved {
        Some(f) => {
            let m = &f.plan.made_with;
            let plane = match m.plane.as_deref() {
                Some("kube") => Some(Plane::Kube),
                Some("systemd") => Some(Plane::Systemd),
                _ => None,
            };
            let cluster = Cluster::new(Connect {
                kubeconfig: m.kubeconfig.clone(),
                context: m.context.clone(),
            });
            PlanRequest {
                stack,
                plane,
                against: ops::live(cluster, m.user, m.server_dry_run, args.force_conflicts)
                    .with_hosts_concurrency(args.hosts_concurrency),
                selection: f.plan.selection(),
                prune_volumes: m.prune_volumes,
            }
        }
        None => PlanRequest {
            stack,
            plane: plane(args.plane),
            against: ops::live(
                cluster(cli),
                args.user,
                args.server_dry_run,
                args.force_conflicts,
            )
            .with_hosts_concurrency(args.hosts_concurrency),
            selection: selection(&args.select),
            prune_volumes: args.prune_volumes,
        },
    };
    let request = ApplyRequest {
        plan: plan_request,
        options: apply::Options {
            adopt: args.adopt,
            allow_replace: args.allow_replace,
            force_conflicts: args.force_conflicts,
            wait: (!args.no_wait).then_some(args.wait_timeout),
            settle: args.settle,
            concurrency: args.concurrency,
            hosts_concurrency: args.hosts_concurrency,
        },
        lock: lock_request(args.lock_timeout, args.lock_lease),
        // A saved plan was reviewed when it was made: applying it is the confirmation.
        confirm: !args.yes && saved.is_none(),
        saved,
        who: Who::Command(command_line()),
        commit: crate::git::clean_commit(&cli.stack),
        rollback_on_failure: args.rollback_on_failure,
        restores: None,
    };
    let span = root_span("labctl apply", &loaded.stack.stack.name, request.plan.plane);
    let _entered = span.enter();
    let mut console = Console::new(cli.verbose, styles);
    let result = apply_runtime()?.block_on(ops::apply(&request, &mut console));
    let applied = match result {
        Ok(a) => a,
        Err(e) => {
            span.record("labctl.result", result_word(&e));
            span.record("error.message", e.report());
            return Err(e);
        }
    };
    span.record("labctl.result", "ok");
    if let Some(g) = &applied.generation {
        span.record("labctl.generation", g.number);
    }
    record_summary(&span, &applied.planned.plan);
    let Some(outcome) = &applied.outcome else {
        return Ok(ExitCode::SUCCESS);
    };
    let s = outcome.summary;
    eprintln!(
        "Apply complete: {} added, {} changed, {} destroyed.{}",
        s.add,
        s.change,
        s.destroy,
        applied
            .generation
            .as_ref()
            .map(|g| format!(" Generation {}.", g.number))
            .unwrap_or_default()
    );
    plan::drop_later(applied);
    Ok(if args.detailed_exitcode {
        ExitCode::from(EXIT_CHANGES)
    } else {
        ExitCode::SUCCESS
    })
}

fn bootstrap_cmd(cli: &Cli, args: &BootstrapArgs, styles: Styles) -> Result<ExitCode, Error> {
    let (stack, _) = load(cli)?;
    let request = ops::BootstrapRequest {
        stack,
        user: args.user,
        keys_file: args.keys_file.clone(),
        shares: args.key_shares,
        threshold: args.key_threshold,
        unseal_only: args.unseal,
        interactive: !args.yes,
        options: apply::Options {
            settle: args.settle,
            ..apply::Options::default()
        },
        lock: lock_request(args.lock_timeout, lock::DEFAULT_LEASE),
        wait: args.wait_timeout,
    };
    let mut console = Console::new(cli.verbose, styles);
    let done = apply_runtime()?.block_on(ops::bootstrap(&request, &mut console))?;
    if args.unseal {
        eprintln!(
            "{}",
            if done.unsealed {
                "OpenBao is unsealed."
            } else {
                "Nothing to do."
            }
        );
    } else if done.changed() {
        eprintln!(
            "Bootstrap complete: {} secret{} filled. Next: `labctl apply`.",
            done.filled.len(),
            if done.filled.len() == 1 { "" } else { "s" }
        );
    } else {
        eprintln!("Nothing to do: OpenBao is set up and holds every secret the stack needs.");
    }
    Ok(ExitCode::SUCCESS)
}

fn force_unlock_cmd(cli: &Cli, args: &ForceUnlockArgs) -> Result<ExitCode, Error> {
    let loaded = stack::load(&cli.stack)?;
    let against = ops::live(cluster(cli), args.user, false, false);
    let spec = ops::lock_spec(&loaded.stack, plane(args.plane), &against)?;
    let done = runtime()?.block_on(lock::force_unlock(&spec));
    ops::close_hosts(&against);
    let done = done?;
    print(&(done.lines.join("\n") + "\n"))?;
    Ok(ExitCode::SUCCESS)
}

/// The lock this command line takes: it names the holder by the command as typed.
fn lock_request(wait: std::time::Duration, lease: std::time::Duration) -> LockRequest {
    LockRequest {
        command: command_line(),
        wait,
        lease,
    }
}

/// This process's command line, as a lock and a generation name it.
fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// The generations of the stack on this host, for `--user` or the stack's own scope.
fn store(cli: &Cli, user: bool) -> Result<(stack::LoadedStack, generations::Store), Error> {
    let loaded = stack::load(&cli.stack)?;
    let scope = if user {
        stack::Scope::User
    } else {
        loaded.stack.host.scope
    };
    let store = generations::Store::of(&loaded.stack, scope);
    Ok((loaded, store))
}

fn history_cmd(cli: &Cli, args: &HistoryArgs) -> Result<ExitCode, Error> {
    let (loaded, store) = store(cli, args.user)?;
    let all = store.list()?;
    let text = match args.output {
        HistoryFormat::Human => view::render_history(&loaded.stack.stack.name, store.dir(), &all),
        HistoryFormat::Json => view::render_history_json(&loaded.stack.stack.name, &all),
    };
    print(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn rollback_cmd(cli: &Cli, args: &RollbackArgs, styles: Styles) -> Result<ExitCode, Error> {
    let (loaded, store) = store(cli, args.user)?;
    let to = match args.generation {
        Some(n) => store.get(n)?,
        None => {
            let good: Vec<_> = store.list()?.into_iter().filter(|g| g.is_good()).collect();
            match good.len() {
                0 | 1 => {
                    return Err(Error::Usage(format!(
                        "no good generation before the current one to roll back to (`labctl \
                         history` lists them; {} recorded in `{}`)",
                        good.len(),
                        store.dir().display()
                    )));
                }
                n => good[n - 2].clone(),
            }
        }
    };
    eprintln!(
        "Rolling back to generation {} ({}, {} by {}).",
        to.number,
        to.source(),
        to.time,
        to.record.who
    );
    let request = ApplyRequest {
        plan: PlanRequest {
            stack: StackSource::Read(Box::new(to.record.snapshot.clone())),
            plane: None,
            against: ops::live(cluster(cli), args.user, false, false),
            selection: Selection::default(),
            prune_volumes: false,
        },
        options: apply::Options {
            wait: Some(args.wait_timeout),
            settle: args.settle,
            ..apply::Options::default()
        },
        lock: lock_request(args.lock_timeout, lock::DEFAULT_LEASE),
        saved: None,
        confirm: !args.yes,
        who: Who::Command(command_line()),
        commit: to.record.commit.clone(),
        rollback_on_failure: false,
        restores: Some(to.number),
    };
    let span = root_span("labctl apply", &loaded.stack.stack.name, None);
    let _entered = span.enter();
    let mut console = Console::new(cli.verbose, styles);
    let applied = apply_runtime()?.block_on(ops::apply(&request, &mut console))?;
    record_summary(&span, &applied.planned.plan);
    match (&applied.outcome, &applied.generation) {
        (Some(o), Some(g)) => eprintln!(
            "Rollback complete: {} added, {} changed, {} destroyed. Generation {} is generation {} again.",
            o.summary.add, o.summary.change, o.summary.destroy, g.number, to.number
        ),
        _ => eprintln!("Generation {} is what runs already.", to.number),
    }
    Ok(ExitCode::SUCCESS)
}
