//! The collectors' image: `make image` packs a statically linked labctl into an OCI archive with
//! buildah; skopeo reads the archive back, and the binary runs out of the unpacked layer, also
//! chrooted into the layer alone (no libc, no NSS beside it).
//!
//! The binary packed is the debug static build `make static IMAGE_PROFILE=dev` leaves in
//! `target/static/dev/` (one link after the debug build; CI runs it before the tests), checked to be
//! the same build as the binary under test.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Labctl, repo};

/// Whether `bin` is an ELF executable without a program interpreter (statically linked).
fn is_static(bin: &Path) -> bool {
    let b = std::fs::read(bin).expect("read the binary");
    assert_eq!(&b[..4], b"\x7fELF", "`{}` is not ELF", bin.display());
    assert_eq!(b[4], 2, "64-bit ELF expected");
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    // PT_INTERP (3) names the dynamic loader; a static binary has none.
    !(0..phnum)
        .any(|i| u32::from_le_bytes(b[phoff + i * phentsize..][..4].try_into().unwrap()) == 3)
}

/// Run a tool (make, tar, skopeo, unshare); its stdout, after it succeeded.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The static binary `make static IMAGE_PROFILE=dev` made, checked to be this build's.
fn static_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let bin = target.join("static/dev/labctl");
    assert!(
        bin.exists(),
        "`{}` is missing: run `make static IMAGE_PROFILE=dev` first (one link after a debug build)",
        bin.display()
    );
    assert!(
        is_static(&bin),
        "`{}` is not statically linked",
        bin.display()
    );
    assert_eq!(
        collector_help(Labctl::new().program(&bin)),
        collector_help(Labctl::new()),
        "`{}` is stale: run `make static IMAGE_PROFILE=dev` again",
        bin.display()
    );
    bin
}

/// `labctl agent collector --help` of a build of labctl.
#[track_caller]
fn collector_help(labctl: Labctl) -> String {
    let out = labctl.args(["agent", "collector", "--help"]).run();
    out.code(0);
    out.stdout
}

#[test]
fn make_image_builds_an_archive_that_runs_the_collector() {
    let bin = static_binary();
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("labctl.tar");
    let image = format!("localhost/labctl:{}", env!("CARGO_PKG_VERSION"));
    run(Command::new("make")
        .arg("--no-print-directory")
        .args(["image", "IMAGE_DEPS=", "IMAGE_PROFILE=dev"])
        .arg(format!("STATIC_BIN={}", bin.display()))
        .arg(format!("IMAGE_ARCHIVE={}", archive.display()))
        .arg(format!("IMAGE_WORK={}", work.path().join("work").display()))
        .current_dir(repo()));

    // The archive names the image the stack uses by default.
    let index: serde_json::Value = serde_json::from_str(&run(Command::new("tar")
        .arg("-xOf")
        .arg(&archive)
        .arg("index.json")))
    .unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        image.as_str()
    );
    let stack: labctl::stack::StackMeta =
        toml::from_str("name = \"lab\"").expect("a minimal [stack]");
    assert_eq!(
        stack.labctl_image, image,
        "the stack's default is not this image"
    );

    let config: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo")
        .arg("inspect")
        .arg("--config")
        .arg(format!("oci-archive:{}", archive.display()))))
    .unwrap();
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["User"], "65534:65534");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/labctl"])
    );
    let inspect: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", archive.display()))))
    .unwrap();
    let layers = inspect["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{inspect}");

    // Unpack the one layer: it holds the binary and nothing else.
    let digest = layers[0].as_str().unwrap().strip_prefix("sha256:").unwrap();
    let oci = work.path().join("oci");
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir_all(&oci).unwrap();
    std::fs::create_dir_all(&rootfs).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&oci));
    let layer = oci.join("blobs/sha256").join(digest);
    run(Command::new("tar")
        .arg("-xf")
        .arg(&layer)
        .arg("-C")
        .arg(&rootfs));
    let entries: Vec<String> = std::fs::read_dir(&rootfs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["labctl"]);
    let packed = rootfs.join("labctl");
    assert!(is_static(&packed));

    let version = Labctl::new().program(&packed).arg("--version").run();
    version.code(0);
    assert_eq!(
        version.stdout.trim(),
        format!("labctl {}", env!("CARGO_PKG_VERSION"))
    );
    let help = collector_help(Labctl::new().program(&packed));
    for flag in [
        "--interval",
        "--proc-path",
        "--sys-path",
        "--root-path",
        "--tailscale-socket",
        "--node-name",
    ] {
        assert!(help.contains(flag), "no {flag} in:\n{help}");
    }

    // In the layer alone, as the container runs it: nobody, no libc, no /etc. One collection of
    // the host's /proc (bind-mounted in as the DaemonSet does) served on /metrics.
    for d in ["proc", "host/proc", "host/sys", "host/root"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let log = work.path().join("collector.log");
    run(Command::new("unshare")
        .args(["--mount", "--fork", "sh", "-c"])
        .arg(
            r#"set -e
r="$1"
mount --rbind /proc "$r/host/proc"
mount --rbind /sys "$r/host/sys"
mount --rbind / "$r/host/root"
chroot --userspec=65534:65534 "$r" /labctl agent collector --interval 100ms \
  --proc-path /host/proc --sys-path /host/sys --root-path /host/root \
  --listen 127.0.0.1:0 --node-name image-test 2>"$2" &
pid=$!
sleep 2
kill -TERM $pid
wait $pid"#,
        )
        .arg("sh")
        .arg(&rootfs)
        .arg(&log));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("serving Prometheus metrics on"), "{log}");
    assert!(log.contains("stopping"), "{log}");
    // Every host source reads as nobody inside the bare layer (Tailscale is simply absent). A
    // mount point of this machine that nobody may not enter is the machine's business.
    for source in [
        "cpu",
        "load",
        "memory",
        "paging",
        "disk",
        "network",
        "uptime",
        "tailscale",
    ] {
        assert!(!log.contains(&format!("cannot read {source}:")), "{log}");
    }
}
