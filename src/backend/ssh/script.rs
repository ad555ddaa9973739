//! The shell side of the ssh transport: every script labctl runs on another host (POSIX `sh`,
//! nothing else assumed but coreutils, `base64` and `flock`), how its words are quoted, and how
//! what the scripts print is read back.

use super::*;

/// `word` as one word for a POSIX shell: as is when it holds only characters no shell treats
/// specially, else in single quotes (a `'` inside as `'\''`).
pub fn quote(word: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"%+,-./:=@_".contains(&b);
    if !word.is_empty() && word.bytes().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The remote command line that runs `script` under `sh -c` with `args` as `$1`, `$2`, ...
pub(super) fn sh_line(script: &str, args: &[&str]) -> String {
    let mut line = format!("sh -c {} sh", quote(script));
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    line
}

/// [`sh_line`] for a script that may call `list` ([`LIST`]).
pub(super) fn script_line(script: &str, args: &[&str]) -> String {
    sh_line(&format!("{LIST}{script}"), args)
}

/// `list DIR`, a shell function the scripts share: the regular files of DIR (no symlinks, no dot
/// files, no name holding a newline) as `L`, then their names (one a line) in base64 lines and
/// `.`, their sizes as `wc -c` prints them and `.`, their bytes one after another in base64
/// lines and `.`; then `D` and the drop-ins below it (`DIR/*.d/*.conf`, one a line) in base64
/// lines and `.`. A handful of processes, however many files: a host's shell starting one per
/// file was most of a plan's time there. A folder that does not exist holds none.
pub(super) const LIST: &str = r#"list() (
  d=$1
  printf 'L\n'
  if [ ! -d "$d" ]; then printf '.\n.\n.\nD\n.\nR\n.\n'; exit 0; fi
  cd "$d" || exit 1
  set --
  for f in *; do
    case $f in *'
'*) continue ;; esac
    if [ -f "$f" ] && [ ! -L "$f" ]; then set -- "$@" "$f"; fi
  done
  if [ $# -gt 0 ]; then
    printf '%s\n' "$@" | base64; printf '.\n'
    wc -c -- "$@" || exit 1; printf '.\n'
    cat -- "$@" | base64; printf '.\n'
  else
    printf '.\n.\n.\n'
  fi
  printf 'D\n'
  for f in *.d/*.conf; do
    if [ -e "$f" ]; then printf '%s/%s\n' "$d" "$f"; fi
  done | base64
  printf '.\n'
  printf 'R\n'
  for f in .*.labctl-restart; do
    if [ -f "$f" ]; then f=${f#.}; printf '%s\n' "${f%.labctl-restart}"; fi
  done | base64
  printf '.\n'
)
"#;

/// The probe, with `$1` the unit folder asked for (empty: the scope's) and `$2` the scope: where
/// the bridge is, the variables the manager's folders follow and the unit folder, one line each
/// (a missing bridge is said, not an error here: the caller names the host), then that folder
/// as `list` gives it; then `ready`, and it becomes the bridge to the manager's bus (for a
/// user's manager, pointed at the user's bus as the remote shell finds it: `--user` alone dials
/// the system bus on systemd 252). A plan needs no second command: one session reads the folder
/// and carries D-Bus.
pub(super) const PROBE: &str = r#"b=$(command -v systemd-stdio-bridge 2>/dev/null) || b=
if [ -z "$b" ]; then
  for p in /usr/bin/systemd-stdio-bridge /lib/systemd/systemd-stdio-bridge /usr/lib/systemd/systemd-stdio-bridge; do
    if [ -x "$p" ]; then b=$p; break; fi
  done
fi
d=$1
if [ -z "$d" ]; then
  if [ "$2" = user ]; then d=${XDG_CONFIG_HOME:-${HOME:-}/.config}/systemd/user; else d=/etc/systemd/system; fi
fi
printf 'bridge=%s\n' "$b"
printf 'HOME=%s\n' "${HOME:-}"
printf 'XDG_CONFIG_HOME=%s\n' "${XDG_CONFIG_HOME:-}"
printf 'XDG_RUNTIME_DIR=%s\n' "${XDG_RUNTIME_DIR:-}"
printf 'UID=%s\n' "$(id -u)"
printf 'dir=%s\n' "$d"
list "$d"
[ -n "$b" ] || exit 0
printf 'ready\n'
if [ "$2" = user ]; then
  exec "$b" -p "unix:path=${XDG_RUNTIME_DIR:-/run/user/$(id -u)}/bus"
fi
exec "$b"
"#;

/// `$1`: the folder to `list`.
pub(super) const READ_DIR: &str = r#"list "$1"
"#;

/// The files the arguments name: a line with one letter per argument (`F` a regular file, `N`
/// none there, `O` something else), then the regular files' sizes as `wc -c` prints them and
/// `.`, their bytes one after another in base64 lines and `.`.
pub(super) const READ_FILES: &str = r#"st=
for p; do
  if [ -f "$p" ]; then st="${st}F"; elif [ -e "$p" ]; then st="${st}O"; else st="${st}N"; fi
done
printf '%s\n' "$st"
for p; do shift; if [ -f "$p" ]; then set -- "$@" "$p"; fi; done
if [ $# -gt 0 ]; then
  wc -c -- "$@" || exit 1; printf '.\n'
  cat -- "$@" | base64; printf '.\n'
else
  printf '.\n.\n'
fi
"#;

/// Stage files read from stdin, each as its path, its mode (`600` or `644`), its text in base64
/// lines and `.`: a temp file beside the path (made owner-only, its folder too when missing and
/// private), written, given its mode and synced, after what a killed apply staged there and
/// never placed is removed (the stack's lock is held). Prints each temp file's path; on a
/// failure removes the ones it made (kept as `$@`) and fails.
pub(super) const STAGE: &str = r#"umask 077
while IFS= read -r p && IFS= read -r m; do
  d=${p%/*}
  [ -n "$d" ] || d=/
  if [ ! -d "$d" ]; then
    if [ "$m" = 600 ]; then mkdir -p "$d"; else (umask 022; mkdir -p "$d"); fi || { rm -f -- "$@"; exit 1; }
  fi
  for o in "$d/.${p##*/}."??????; do
    if [ -f "$o" ] && [ ! -L "$o" ]; then rm -f -- "$o"; fi
  done
  t=$(mktemp "$d/.${p##*/}.XXXXXX") || { rm -f -- "$@"; exit 1; }
  set -- "$@" "$t"
  while IFS= read -r l && [ "$l" != . ]; do printf '%s\n' "$l"; done | base64 -d > "$t" || { rm -f -- "$@"; exit 1; }
  chmod "$m" "$t" || { rm -f -- "$@"; exit 1; }
  sync "$t" 2>/dev/null || sync
done
printf '%s\n' "$@"
"#;

/// Steps given as arguments, in order: `r PATH` removes a file (gone already is fine), `m TMP
/// PATH` renames a staged file into place, `s DIR` syncs a folder (the renames and removals in
/// it survive a crash).
pub(super) const COMMIT: &str = r#"while [ $# -gt 0 ]; do
  case $1 in
    r) rm -f -- "$2" || exit 1; shift 2 ;;
    m) mv -f -- "$2" "$3" || exit 1; shift 3 ;;
    s) if [ -d "$2" ]; then sync "$2" 2>/dev/null || sync; fi; shift 2 ;;
    *) echo "unknown step $1" >&2; exit 1 ;;
  esac
done
"#;

/// Hold `flock` on the file `$2` in the folder `$1` (made owner-only) for as long as stdin stays
/// open: waits up to `$3` seconds for another holder, then says `busy` and who (the file's
/// text); once held, writes the first line of stdin (the holder) into the file, says `locked`
/// and lists the unit folder `$4` (read under the lock, it is what the plan starts from). The
/// kernel lets go when this ends, however it ends: labctl letting go, labctl killed (its ssh
/// goes, and with it stdin), or the connection lost.
pub(super) const LOCK: &str = r#"command -v flock >/dev/null 2>&1 || { echo "flock (util-linux) is not installed" >&2; exit 1; }
mkdir -p "$1" 2>/dev/null
exec 9>>"$1/$2" || exit 1
if ! flock -w "$3" 9; then
  printf 'busy %s\n' "$(cat "$1/$2")"
  exit 3
fi
IFS= read -r holder
printf '%s\n' "$holder" > "$1/$2"
echo locked
list "$4"
cat > /dev/null
"#;

/// Say who holds the lock file `$2` in the folder `$1`: nothing when it is free (or not there),
/// else `busy` and what its holder wrote.
pub(super) const LOCK_HOLDER: &str = r#"[ -e "$1/$2" ] || exit 0
command -v flock >/dev/null 2>&1 || { echo "flock (util-linux) is not installed" >&2; exit 1; }
exec 9<"$1/$2" || exit 1
flock -n -s 9 && exit 0
printf 'busy %s\n' "$(cat "$1/$2")"
"#;

/// The base64 lines up to the next `.`, decoded.
pub(super) fn block<'a>(lines: &mut impl Iterator<Item = &'a str>) -> Option<Vec<u8>> {
    let mut b64 = String::new();
    for l in lines.by_ref() {
        if l == "." {
            return base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .ok();
        }
        b64.push_str(l.trim());
    }
    None
}

/// The first number of each line up to the next `.`: sizes as `wc -c` prints them (its `total`
/// line, when there is one, comes last).
pub(super) fn sizes<'a>(lines: &mut impl Iterator<Item = &'a str>) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for l in lines.by_ref() {
        if l == "." {
            return Some(out);
        }
        out.push(l.split_whitespace().next()?.parse().ok()?);
    }
    None
}

/// `bytes` cut into pieces of `sizes` (the first `n` of them), as text; `None` when they do not
/// add up (a file changed between `wc` and `cat`) or a piece is not UTF-8.
pub(super) fn cut(bytes: &[u8], sizes: &[usize], n: usize) -> Option<Vec<String>> {
    let sizes = sizes.get(..n)?;
    if sizes.iter().sum::<usize>() != bytes.len() {
        return None;
    }
    let mut out = Vec::new();
    let mut at = 0;
    for size in sizes {
        out.push(String::from_utf8(bytes[at..at + size].to_vec()).ok()?);
        at += size;
    }
    Some(out)
}

/// What `list` printed after its `L` line.
pub(super) fn parse_listing<'a>(lines: &mut impl Iterator<Item = &'a str>) -> Option<UnitListing> {
    let names = String::from_utf8(block(lines)?).ok()?;
    let names: Vec<&str> = names.lines().collect();
    let sizes = sizes(lines)?;
    let texts = cut(&block(lines)?, &sizes, names.len())?;
    if lines.next()? != "D" {
        return None;
    }
    let drop_ins = String::from_utf8(block(lines)?).ok()?;
    if lines.next()? != "R" {
        return None;
    }
    let owed = String::from_utf8(block(lines)?).ok()?;
    Some(UnitListing {
        files: names.into_iter().map(str::to_string).zip(texts).collect(),
        drop_ins: drop_ins.lines().map(str::to_string).collect(),
        restart_owed: owed.lines().map(str::to_string).collect(),
    })
}

/// What [`READ_FILES`] printed, for `n` paths.
pub(super) fn parse_files(text: &str, n: usize) -> Option<Vec<Option<String>>> {
    let mut lines = text.lines();
    let kinds = lines.next()?;
    if kinds.len() != n {
        return None;
    }
    let regular = kinds.bytes().filter(|&k| k == b'F').count();
    let sizes = sizes(&mut lines)?;
    let mut texts = cut(&block(&mut lines)?, &sizes, regular)?.into_iter();
    kinds
        .bytes()
        .map(|k| match k {
            b'F' => texts.next().map(Some),
            _ => Some(None),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_words_reach_a_shell_unchanged() {
        let words = [
            "",
            "plain",
            "a b",
            "it's",
            "$HOME",
            "`id`",
            "a\"b\\c",
            "new\nline",
            "'''",
            "*",
            "-n",
            "ünïcode",
            "x;y&z|w",
        ];
        let mut line = String::from("printf '%s\\0'");
        for w in words {
            line.push(' ');
            line.push_str(&quote(w));
        }
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}");
        let got: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .split('\0')
            .map(str::to_string)
            .collect();
        let mut want: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        want.push(String::new());
        assert_eq!(got, want);
        assert_eq!(quote("/etc/systemd/system"), "/etc/systemd/system");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn a_script_and_its_arguments_run_under_sh_as_given() {
        let line = sh_line(
            r#"printf '%s|' "$@"; printf '%s' "$0""#,
            &["a b", "$x", "it's"],
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "a b|$x|it's|sh");
    }

    #[tokio::test]
    async fn the_file_scripts_read_and_write_what_they_are_given() {
        // The remote scripts, run by a local sh: staged files land beside their place with
        // their modes, placed ones read back byte for byte, and the listing skips what it must.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let output = |script: &str, args: &[&str], stdin: &str| {
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(script).arg("sh").args(args);
            c.stdin(Stdio::piped()).stdout(Stdio::piped());
            let mut child = c.spawn().unwrap();
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(stdin.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            (out.status, String::from_utf8(out.stdout).unwrap())
        };
        let run = |script: &str, args: &[&str], stdin: &str| {
            let (status, out) = output(script, args, stdin);
            assert!(status.success(), "{script}");
            out
        };
        let engine = base64::engine::general_purpose::STANDARD;
        let unit = "[Service]\nExecStart=/bin/true 'it''s' $X\n";
        let secret = "TOKEN='s3cr€t'\nKEY=\"multi\nline\"\n";
        let input = format!(
            "{}\n644\n{}\n.\n{}\n600\n{}\n.\n",
            d.join("units/a.service").display(),
            engine.encode(unit),
            d.join("env/labctl/a.env").display(),
            engine.encode(secret)
        );
        // A killed apply's temp file beside the unit is swept; other dot files stay.
        std::fs::create_dir_all(d.join("units")).unwrap();
        std::fs::write(d.join("units/.a.service.Xy12Zw"), "stale").unwrap();
        let staged = run(STAGE, &[], &input);
        assert!(!d.join("units/.a.service.Xy12Zw").exists());
        let tmps: Vec<&str> = staged.lines().collect();
        assert_eq!(tmps.len(), 2, "{staged}");
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(std::fs::metadata(tmps[0]).unwrap().mode() & 0o777, 0o644);
        assert_eq!(std::fs::metadata(tmps[1]).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(d.join("env/labctl")).unwrap().mode() & 0o777,
            0o700
        );
        let unit_path = d.join("units/a.service").display().to_string();
        let env_path = d.join("env/labctl/a.env").display().to_string();
        let units = d.join("units").display().to_string();
        run(
            COMMIT,
            &[
                "m", tmps[0], &unit_path, "m", tmps[1], &env_path, "s", &units,
            ],
            "",
        );
        std::fs::write(d.join("units/.hidden"), "x").unwrap();
        std::fs::write(d.join("units/.a.service.labctl-restart"), "").unwrap();
        std::fs::write(d.join("units/odd name's.timer"), "").unwrap();
        std::fs::write(d.join("units/z.service"), "ünï\n".repeat(100)).unwrap();
        std::fs::create_dir_all(d.join("units/a.service.d")).unwrap();
        std::fs::create_dir_all(d.join("units/default.target.wants")).unwrap();
        std::fs::write(d.join("units/a.service.d/x.conf"), "[Unit]\n").unwrap();
        std::os::unix::fs::symlink(d.join("units/a.service"), d.join("units/b.service")).unwrap();
        let with_list = |script: &str| format!("{LIST}{script}");
        let listing = run(&with_list(READ_DIR), &[&units], "");
        let mut lines = listing.lines();
        assert_eq!(lines.next(), Some("L"), "{listing}");
        let UnitListing {
            files,
            drop_ins,
            restart_owed,
        } = parse_listing(&mut lines).expect(&listing);
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["a.service", "odd name's.timer", "z.service"]
        );
        assert_eq!(files["a.service"], unit);
        assert_eq!(files["odd name's.timer"], "");
        assert_eq!(files["z.service"], "ünï\n".repeat(100));
        assert_eq!(drop_ins, [format!("{units}/a.service.d/x.conf")]);
        assert_eq!(restart_owed, BTreeSet::from(["a.service".to_string()]));
        // A folder that is not there holds nothing; the probe lists the folder it names.
        let none = run(&with_list(READ_DIR), &[&format!("{units}/nope")], "");
        let mut lines = none.lines();
        assert_eq!(lines.next(), Some("L"));
        assert_eq!(parse_listing(&mut lines), Some(UnitListing::default()));
        // Where this machine has the bridge, the probe becomes it after `ready`, and it ends
        // (failing) as soon as it finds no bus there: only what comes before is the probe's.
        let (_, probe) = output(&with_list(PROBE), &[&units, "user"], "");
        assert!(probe.contains(&format!("\ndir={units}\nL\n")), "{probe}");
        let mut lines = probe.lines().skip_while(|l| *l != "L").skip(1);
        assert_eq!(
            parse_listing(&mut lines).map(|l| l.files.len()),
            Some(3),
            "{probe}"
        );
        let read = run(
            READ_FILES,
            &[
                &env_path,
                &d.join("nope").display().to_string(),
                &unit_path,
                &units,
            ],
            "",
        );
        assert_eq!(
            parse_files(&read, 4),
            Some(vec![
                Some(secret.to_string()),
                None,
                Some(unit.to_string()),
                None
            ]),
            "{read}"
        );
        // Sizes that do not add up (a file that changed between `wc` and `cat`) are refused.
        let mut changed: Vec<&str> = read.lines().collect();
        changed[1] = "1 shorter-than-it-was";
        assert_eq!(parse_files(&changed.join("\n"), 4), None);
        run(COMMIT, &["r", &env_path, "r", &env_path], "");
        assert!(!Path::new(&env_path).exists());
    }
}
