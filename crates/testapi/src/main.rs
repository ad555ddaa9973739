//! `labctl-testapi`: runs the test Kubernetes API server until killed, for benchmarks and
//! manual poking.
//!
//! ```text
//! labctl-testapi [--latency-ms N] [--kubeconfig PATH] [--port N] [--auto-rollout] [--bare]
//! ```
//!
//! Prints the server URL on the first line and the kubeconfig path on the second, then serves.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use labctl_testapi::{Options, TestApiServer};

const USAGE: &str = "usage: labctl-testapi [--latency-ms N] [--kubeconfig PATH] [--port N] [--auto-rollout] [--bare]

  --latency-ms N     inject N milliseconds of latency before every request
  --kubeconfig PATH  write the kubeconfig here (default: a temporary directory)
  --port N           bind 127.0.0.1:N (default: a free port)
  --auto-rollout     workloads report a completed rollout right after every write
  --bare             do not create the default namespaces";

fn parse(args: &[String]) -> Result<Options, String> {
    let mut opts = Options::default();
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
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
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
    let srv = match TestApiServer::start_blocking(opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", srv.url());
    println!("{}", srv.kubeconfig_path().display());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}
