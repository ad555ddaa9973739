//! `labctl-testapi`: runs the test Kubernetes API server until killed, for benchmarks and
//! manual poking.
//!
//! ```text
//! labctl-testapi [--latency-ms N] [--kubeconfig PATH] [--port N] [--auto-rollout] [--bare]
//!                [--apply FILE]... [--field-manager NAME]
//! ```
//!
//! Prints the server URL on the first line and the kubeconfig path on the second, then serves.
//! Control endpoints (not counted): `GET /testapi/requests`, `POST /testapi/reset`,
//! `POST /testapi/latency?ms=N`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use labctl_testapi::{Options, TestApiServer};

const USAGE: &str = "usage: labctl-testapi [--latency-ms N] [--kubeconfig PATH] [--port N] [--auto-rollout] [--bare]
                      [--apply FILE]... [--field-manager NAME]

  --latency-ms N     inject N milliseconds of latency before every request
  --kubeconfig PATH  write the kubeconfig here (default: a temporary directory)
  --port N           bind 127.0.0.1:N (default: a free port)
  --auto-rollout     workloads report a completed rollout right after every write
  --bare             do not create the default namespaces
  --apply FILE       server-side apply the objects of a (multi-document) YAML file at start
  --field-manager M  field manager for --apply (default: labctl)

Control endpoints (not counted as requests):
  GET  /testapi/requests       {\"total\": N, \"routes\": {\"GET /api\": 1, ...}}
  POST /testapi/reset          reset the request counters
  POST /testapi/latency?ms=N   change the injected latency";

struct Args {
    opts: Options,
    apply: Vec<PathBuf>,
    manager: String,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut opts = Options::default();
    let mut apply = Vec::new();
    let mut manager = "labctl".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("`{name}` needs a value"))
        };
        match a.as_str() {
            "--latency-ms" => {
                let v = value(a)?;
                let ms: u64 = v
                    .parse()
                    .map_err(|_| format!("invalid `--latency-ms` value `{v}`"))?;
                opts.latency = Duration::from_millis(ms);
            }
            "--kubeconfig" => opts.kubeconfig_path = Some(PathBuf::from(value(a)?)),
            "--port" => {
                let v = value(a)?;
                opts.port = v
                    .parse()
                    .map_err(|_| format!("invalid `--port` value `{v}`"))?;
            }
            "--auto-rollout" => opts.auto_rollout = true,
            "--bare" => opts.cluster_defaults = false,
            "--apply" => apply.push(PathBuf::from(value(a)?)),
            "--field-manager" => manager = value(a)?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Args {
        opts,
        apply,
        manager,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Args {
        opts,
        apply,
        manager,
    } = match parse(&args) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let latency = opts.latency;
    // Seeding goes at full speed; the latency applies once serving starts.
    let opts = Options {
        latency: std::time::Duration::ZERO,
        ..opts
    };
    let srv = match TestApiServer::start_blocking(opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for file in &apply {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read `{}`: {e}", file.display());
                return ExitCode::FAILURE;
            }
        };
        match srv.apply_yaml(&manager, &text) {
            Ok(n) => eprintln!("applied {n} objects from `{}`", file.display()),
            Err(e) => {
                eprintln!("error: applying `{}`: {e}", file.display());
                return ExitCode::FAILURE;
            }
        }
    }
    srv.set_latency(latency);
    srv.reset_requests();
    println!("{}", srv.url());
    println!("{}", srv.kubeconfig_path().display());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}
