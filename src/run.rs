//! Wiring: parse the command line, call the library, print through the views, pick the exit code.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command, Format, PlanArgs, PlaneArg, RenderArgs};
use crate::error::Error;
use crate::plan::{self, Live};
use crate::render::{self, Templates};
use crate::resource::{Desired, ResourceId};
use crate::stack::{self, LoadedStack, Plane};
use crate::view::{self, Styles};

/// Exit code: changes are present (`--detailed-exitcode`).
const EXIT_CHANGES: u8 = 2;

/// Run labctl with the process's arguments.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let err_styles = Styles::detect(cli.no_color, std::io::stderr().is_terminal());
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            let _ = std::io::stderr().write_all(view::render_error(&e, err_styles).as_bytes());
            ExitCode::FAILURE
        }
    }
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
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "labctl",
                &mut std::io::stdout(),
            );
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
    match &args.output {
        Some(dir) => {
            for (id, o) in &desired.objects {
                write_atomic(&dir.join(render_path(id)), o.content.text().as_bytes())?;
            }
            eprintln!(
                "wrote {} files to `{}`",
                desired.objects.len(),
                dir.display()
            );
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
            std::io::stdout()
                .write_all(out.as_bytes())
                .map_err(|source| Error::Write {
                    path: "<stdout>".into(),
                    source,
                })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where `render -o` puts an object, relative to the output folder.
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

/// Write through a temporary file in the same folder and rename: a reader never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let werr = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(werr)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(werr)?;
    tmp.write_all(bytes).map_err(werr)?;
    tmp.persist(path).map_err(|e| werr(e.error))?;
    Ok(())
}

fn plan_cmd(cli: &Cli, args: &PlanArgs, styles: Styles) -> Result<ExitCode, Error> {
    let loaded = stack::load(&cli.stack)?;
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
        return Err(Error::Usage(
            "`labctl plan` compares with the live cluster and host only through `apply`'s backends; \
             pass `--offline` (against nothing) or `--base <rev>` (against a git revision)"
                .into(),
        ));
    };
    let plan = plan::diff(&desired, &live);
    let text = match args.output {
        Format::Human => view::render_plan_human(&plan, styles),
        Format::Json => view::render_plan_json(&plan),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|source| Error::Write {
            path: "<stdout>".into(),
            source,
        })?;
    if args.detailed_exitcode && !plan.is_empty() {
        return Ok(ExitCode::from(EXIT_CHANGES));
    }
    Ok(ExitCode::SUCCESS)
}
