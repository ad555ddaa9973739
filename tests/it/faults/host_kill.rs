//! `labctl apply` killed (SIGKILL) after each file write, after the daemon-reload and after each
//! job of a host apply that changes, adds and removes units and env files. After each kill, a
//! second apply must converge, every unit must run its new content (not merely have its new file
//! on disk), and a plan must say `No changes.`.

use std::path::{Path, PathBuf};

use super::killed;
use crate::support::Stack;
use crate::support::systemd::UserManager;

/// A service that writes the version it runs and the token its env file gave it, then sleeps.
const VERSIONED: &str = r#"{% import "systemd-templates/_lib/unit.j2" as u %}
[Unit]
Description=fault test {{ c.values.version }}

[Service]
ExecStart=/bin/sh -c 'printf %%s "{{ c.values.version }} $$API_TOKEN" > {{ c.values.out }}; exec sleep infinity'
{{ u.env_file(c.values.env, {"API_TOKEN": "api-token"}) -}}

[Install]
WantedBy=default.target
"#;

struct Lab {
    m: UserManager,
    dir: PathBuf,
}

impl Lab {
    fn out(&self, unit: &str) -> PathBuf {
        self.dir.join(format!("{unit}.out"))
    }

    /// The stack at `version`: `fk-keep` changes with it (and its token), `fk-old` exists only
    /// in v1 and `fk-new` only in v2.
    fn stack(&self, version: u32) -> PathBuf {
        let mut s = Stack::units(&self.dir, "fk").template("versioned.service", VERSIONED);
        let units: &[&str] = if version == 1 {
            &["fk-keep", "fk-old"]
        } else {
            &["fk-keep", "fk-new"]
        };
        for unit in units {
            s = s.unit(
                unit,
                &format!(
                    "template = \"versioned\"\nunit = \"{unit}\"\nvalues = {{ version = \"v{version}\", out = \"{}\", env = \"{unit}\" }}",
                    self.out(unit).display()
                ),
            );
        }
        s.write()
    }

    fn apply(&self, stack: &Path, version: u32, failpoint: Option<&str>) -> crate::support::Output {
        let mut c = self
            .m
            .command(
                stack,
                &["apply", "--plane", "systemd", "--yes", "--settle", "300ms"],
            )
            .env("LABCTL_SECRET_API_TOKEN", format!("token-{version}"));
        if let Some(f) = failpoint {
            c = c.env("LABCTL_FAILPOINT", f);
        }
        c.run()
    }

    #[track_caller]
    fn converged(&self, stack: &Path, version: u32) {
        self.m
            .command(
                stack,
                &["plan", "--plane", "systemd", "--detailed-exitcode"],
            )
            .env("LABCTL_SECRET_API_TOKEN", format!("token-{version}"))
            .run()
            .code(0)
            .stdout_has("No changes.");
        let (live, gone) = if version == 1 {
            (["fk-keep", "fk-old"], "fk-new")
        } else {
            (["fk-keep", "fk-new"], "fk-old")
        };
        for unit in live {
            let want = format!("v{version} token-{version}");
            crate::support::wait_for(
                format!("{unit} to run {want}"),
                std::time::Duration::from_secs(10),
                || std::fs::read_to_string(self.out(unit)).is_ok_and(|s| s == want),
            );
            assert_eq!(self.m.active_state(&format!("{unit}.service")), "active");
        }
        assert_ne!(self.m.active_state(&format!("{gone}.service")), "active");
        assert!(!self.m.unit_dir().join(format!("{gone}.service")).exists());
    }
}

/// Leftovers of a killed write: labctl's hidden temp files in the unit and env folders.
fn temp_files(dirs: &[PathBuf]) -> Vec<String> {
    dirs.iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
        .collect()
}

#[test]
fn apply_killed_at_every_host_step_converges_on_the_next_run() {
    let m = UserManager::start();
    let dir = m.scratch().join("fk");
    std::fs::create_dir_all(&dir).unwrap();
    let lab = Lab { m, dir };
    let v1 = lab.stack(1);
    lab.apply(&v1, 1, None).code(0);
    lab.converged(&v1, 1);
    let env_dir = lab.m.scratch().parent().unwrap().join("config/labctl");
    let mut report = Vec::new();
    for point in [
        "apply.systemd.write",
        "apply.systemd.daemon-reload",
        "apply.systemd.job",
    ] {
        let mut n = 1;
        loop {
            let v2 = lab.stack(2);
            let spec = format!("{point}#{n}");
            let out = lab.apply(&v2, 2, Some(&spec));
            if !killed(&out, point) {
                // The count ran past the last hit: this apply finished. Back to v1.
                lab.converged(&v2, 2);
                let v1 = lab.stack(1);
                lab.apply(&v1, 1, None).code(0);
                lab.converged(&v1, 1);
                break;
            }
            // The files are the old or the new whole (the plan reads them); a temp file the
            // killed write held is hidden from systemd and from labctl's observation.
            let again = lab.apply(&v2, 2, None);
            again.code(0);
            lab.converged(&v2, 2);
            report.push(spec);
            // Back to v1 for the next kill point.
            let v1 = lab.stack(1);
            lab.apply(&v1, 1, None).code(0);
            lab.converged(&v1, 1);
            n += 1;
        }
    }
    eprintln!(
        "killed at {} points, each converged: {report:?}",
        report.len()
    );
    // The writes (2 unit files, 1 unit removed, 2 env files, 1 env file removed), the
    // daemon-reload and the jobs (stop, enable, restart, start) were each a kill point.
    assert!(report.len() >= 8, "{report:?}");
    assert!(
        temp_files(&[lab.m.unit_dir(), env_dir.clone()]).is_empty(),
        "{:?}",
        temp_files(&[lab.m.unit_dir(), env_dir])
    );
}
