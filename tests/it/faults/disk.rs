//! A full disk (a 64 KiB tmpfs, filled) under each folder labctl writes: unit files, env files,
//! the render folder, a saved plan, the generations and the proxy's state. Each must fail with a
//! message naming the file (the proxy: a 5xx, so GitHub redelivers), leave the old file whole and
//! no temp file behind, and converge once space is back.

use std::path::{Path, PathBuf};

use crate::support::systemd::UserManager;
use crate::support::{Output, Stack};

/// A small tmpfs mounted over a folder (its contents hidden meanwhile), unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn over(dir: &Path) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "mount a tmpfs on {} (needs root)",
            dir.display()
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    /// Take every byte left.
    fn fill(&self) {
        use std::io::Write as _;
        let mut f = std::fs::File::create(self.dir.join(".filler")).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.dir.join(".filler")).unwrap();
    }

    /// Files labctl left: anything but the filler, hidden temp files included.
    fn temp_files(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

#[track_caller]
fn full_disk_error(out: &Output, file: &Path) {
    out.code(1);
    assert!(
        out.stderr.contains(&file.display().to_string())
            && out.stderr.contains("No space left on device"),
        "the error names {} and the cause:\n{}",
        file.display(),
        out.stderr
    );
}

const UNIT: &str = r#"{% import "systemd-templates/_lib/unit.j2" as u %}
[Unit]
Description={{ c.values.description }}

[Service]
ExecStart=/bin/sleep infinity
{{ u.env_file(c.values.env, {"API_TOKEN": "api-token"}) -}}

[Install]
WantedBy=default.target
"#;

fn host_stack(m: &UserManager, description: &str) -> PathBuf {
    Stack::units(&m.scratch(), "df")
        .template("df.service", UNIT)
        .unit(
            "df-a",
            &format!(
                "template = \"df\"\nunit = \"df-a\"\nvalues = {{ description = \"{description}\", env = \"df-a\" }}"
            ),
        )
        .write()
}

fn apply(m: &UserManager, stack: &Path, token: &str) -> Output {
    m.command(
        stack,
        &["apply", "--plane", "systemd", "--yes", "--settle", "200ms"],
    )
    .env("LABCTL_SECRET_API_TOKEN", token)
    .run()
}

#[track_caller]
fn converged(m: &UserManager, stack: &Path, token: &str) {
    m.command(
        stack,
        &["plan", "--plane", "systemd", "--detailed-exitcode"],
    )
    .env("LABCTL_SECRET_API_TOKEN", token)
    .run()
    .code(0)
    .stdout_has("No changes.");
}

#[test]
fn a_full_unit_folder_fails_naming_the_file_and_converges_once_space_is_back() {
    let m = UserManager::start();
    let disk = Tmpfs::over(&m.unit_dir());
    let stack = host_stack(&m, "small");
    apply(&m, &stack, "t1").code(0);
    converged(&m, &stack, "t1");
    let unit = m.unit_dir().join("df-a.service");
    let before = std::fs::read_to_string(&unit).unwrap();

    let stack = host_stack(&m, &"a much longer description ".repeat(300));
    disk.fill();
    full_disk_error(&apply(&m, &stack, "t1"), &unit);
    assert_eq!(std::fs::read_to_string(&unit).unwrap(), before);
    assert_eq!(disk.temp_files(), Vec::<String>::new());
    assert_eq!(m.active_state("df-a.service"), "active");

    disk.free();
    apply(&m, &stack, "t1").code(0);
    converged(&m, &stack, "t1");
    assert!(
        std::fs::read_to_string(&unit)
            .unwrap()
            .contains("a much longer")
    );
}

#[test]
fn a_full_env_folder_fails_naming_the_file_and_converges_once_space_is_back() {
    let m = UserManager::start();
    let env_dir = m.scratch().parent().unwrap().join("config/labctl");
    let disk = Tmpfs::over(&env_dir);
    let stack = host_stack(&m, "env");
    apply(&m, &stack, "t1").code(0);
    converged(&m, &stack, "t1");
    let file = env_dir.join("df-a.env");
    let before = std::fs::read_to_string(&file).unwrap();

    disk.fill();
    let long = "v".repeat(8000);
    full_disk_error(&apply(&m, &stack, &long), &file);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    assert_eq!(disk.temp_files(), Vec::<String>::new());

    disk.free();
    apply(&m, &stack, &long).code(0);
    converged(&m, &stack, &long);
    assert!(std::fs::read_to_string(&file).unwrap().contains(&long));
}

#[test]
fn a_full_render_folder_or_saved_plan_fails_naming_the_file_and_works_once_space_is_back() {
    let s = Stack::bundled();
    let dir = s.path().join("rendered");
    let disk = Tmpfs::over(&dir);
    let render = || {
        s.labctl(&["render", "--redact", "--plane", "systemd", "-d"])
            .arg(&dir)
            .run()
    };
    render().code(0);
    let unit = dir.join("systemd/reading-sync.service");
    let before = std::fs::read_to_string(&unit).unwrap();
    // A bigger render: the sync's command grows.
    std::fs::write(
        s.stack_file(),
        std::fs::read_to_string(s.stack_file()).unwrap().replace(
            "/srv/reading\"",
            &format!("/srv/reading --exclude {}\"", "x".repeat(8000)),
        ),
    )
    .unwrap();
    disk.fill();
    let out = render();
    out.code(1);
    assert!(
        out.stderr.contains(&dir.display().to_string())
            && out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&unit).unwrap(), before);
    disk.free();
    render().code(0);
    assert!(
        std::fs::read_to_string(&unit)
            .unwrap()
            .contains("--exclude xxxx")
    );

    // A saved plan (offline is refused for --out; plan the host plane of a user manager).
    let m = UserManager::start();
    let stack = host_stack(&m, "saved");
    let plans = m.scratch().join("plans");
    let disk = Tmpfs::over(&plans);
    let file = plans.join("p.json");
    std::fs::write(&file, "old plan\n").unwrap();
    disk.fill();
    let out = m
        .command(&stack, &["plan", "--plane", "systemd", "--out"])
        .arg(&file)
        .env("LABCTL_SECRET_API_TOKEN", "t1")
        .run();
    full_disk_error(&out, &file);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "old plan\n");
    assert_eq!(disk.temp_files(), Vec::<String>::new());
    disk.free();
    m.command(&stack, &["plan", "--plane", "systemd", "--out"])
        .arg(&file)
        .env("LABCTL_SECRET_API_TOKEN", "t1")
        .run()
        .code(0);
    m.command(&stack, &["apply", "--settle", "200ms"])
        .arg(&file)
        .env("LABCTL_SECRET_API_TOKEN", "t1")
        .run()
        .code(0);
    converged(&m, &stack, "t1");
}

#[test]
fn a_full_generations_folder_fails_naming_the_file_and_records_once_space_is_back() {
    let m = UserManager::start();
    let state = m.scratch().join("state");
    let disk = Tmpfs::over(&state);
    let text = std::fs::read_to_string(host_stack(&m, "gen"))
        .unwrap()
        .replace(
            "[host]\n",
            &format!("[host]\nstate_dir = \"{}\"\n", state.display()),
        );
    let stack = m.scratch().join("stack.toml");
    std::fs::write(&stack, text).unwrap();
    disk.fill();
    let out = apply(&m, &stack, "t1");
    out.code(1);
    assert!(
        out.stderr.contains(&state.display().to_string())
            && out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    assert_eq!(disk.temp_files(), Vec::<String>::new());
    disk.free();
    // The units were applied; the next apply has nothing to change and records the generation.
    apply(&m, &stack, "t1").code(0);
    converged(&m, &stack, "t1");
    m.command(&stack, &["history"])
        .env("LABCTL_SECRET_API_TOKEN", "t1")
        .run()
        .code(0)
        .stdout_has("ok");
}

/// The proxy's state folder full: a push it cannot remember is refused with 5xx (GitHub
/// redelivers), never half-queued; once space is back the redelivery is taken and synced.
#[test]
fn a_full_proxy_state_folder_refuses_the_push_and_takes_the_redelivery_once_space_is_back() {
    use crate::support::agents::SECRET;
    use crate::support::gitops::{Gitops, pending, synced};
    let g = Gitops::new(&["a"]);
    let (push, after) = g.push(&["a", "b"]);
    let disk = Tmpfs::over(&g.repo.join(".git/labctl-proxy"));
    let p = g.proxy().start();
    disk.fill();
    let sig = labctl::agent::proxy::webhook::sign(SECRET.as_bytes(), push.as_bytes());
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "full-state-0001"),
        ("X-Hub-Signature-256", sig.as_str()),
        ("Content-Type", "application/json"),
    ];
    let deliver = || {
        crate::support::agents::try_request(
            p.port,
            "POST",
            "/hooks/github",
            &headers,
            push.as_bytes(),
        )
        .unwrap()
    };
    let refused = deliver();
    assert!(refused.status >= 500, "{refused:?}\n{}", p.log_text());
    assert!(disk.temp_files().is_empty(), "{:?}", disk.temp_files());
    assert!(
        pending(&g.repo).is_none_or(|q| q["commit"] != after.as_str()),
        "half-queued: {:?}",
        pending(&g.repo)
    );

    disk.free();
    let taken = deliver();
    assert!(taken.status == 202, "{taken:?}\n{}", p.log_text());
    let status = synced(&p, &after);
    assert_eq!(status["result"], "ok", "{status}\n{}", p.log_text());
    g.converged();
    assert_eq!(p.stop(), Some(0));
}
