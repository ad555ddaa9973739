//! `render --output-dir DIR`: the folder is labctl's. It records what it wrote in `DIR/.labctl-render`,
//! so a file it wrote before and no longer renders (a component switched off) is removed, and
//! `kubectl apply -R -f DIR` never re-applies it. Files labctl did not write are left alone and
//! named. Every file is written to a temporary file and renamed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::atomic::Access;
use crate::error::Error;
use crate::resource::ResourceId;

/// The record of what the last render wrote, inside the output folder. No `.yaml`/`.json`
/// extension: `kubectl apply -R -f DIR` reads only those.
pub const RECORD: &str = ".labctl-render";

/// First line of the record; the second names the stack.
const HEADER: &str = "# labctl render: the files below were written by `labctl render --output-dir`; \
                      the next render removes those it no longer renders";

/// What one render did to the folder.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// The folder.
    pub dir: PathBuf,
    /// Files written (relative paths).
    pub written: usize,
    /// Files a previous render wrote that this one no longer renders, now removed.
    pub removed: Vec<String>,
    /// Files in the folder that labctl did not write: left alone.
    pub foreign: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "wrote {} files to `{}`",
            self.written,
            self.dir.display()
        )?;
        for r in &self.removed {
            writeln!(f, "removed `{r}`: no longer rendered")?;
        }
        if !self.foreign.is_empty() {
            writeln!(
                f,
                "left alone, not written by labctl ({}):",
                self.foreign.len()
            )?;
            for r in &self.foreign {
                writeln!(f, "  {r}")?;
            }
        }
        Ok(())
    }
}

/// Write `files` (relative path → content) for stack `stack` into `dir`, and remove the files a
/// previous render of the same stack wrote under one of `scope`'s folders (as `kube/`) that are
/// not in `files`. Recorded files outside `scope` (another plane, rendered another time) stay.
///
/// # Errors
/// [`Error::Write`]/[`Error::Read`] naming the file; [`Error::Usage`] when `dir` holds the render
/// of another stack (its files are not this stack's to remove).
pub fn write(
    dir: &Path,
    stack: &str,
    scope: &[&str],
    files: &[(String, String)],
) -> Result<Report, Error> {
    let record_path = dir.join(RECORD);
    let before = read_record(&record_path, stack)?;
    let now: BTreeSet<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    for (rel, text) in files {
        crate::atomic::write(&dir.join(rel), text.as_bytes(), Access::Private)?;
    }
    let mut report = Report {
        dir: dir.to_path_buf(),
        written: files.len(),
        ..Report::default()
    };
    let mut kept: BTreeSet<String> = now.iter().map(|s| s.to_string()).collect();
    for old in &before {
        if now.contains(old.as_str()) {
            continue;
        }
        if !scope.iter().any(|s| old.starts_with(s)) {
            kept.insert(old.clone());
            continue;
        }
        let path = dir.join(old);
        match std::fs::remove_file(&path) {
            Ok(()) => report.removed.push(old.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Write { path, source }),
        }
        remove_empty_parents(dir, &path);
    }
    let mut record = format!("{HEADER}\nstack = {stack}\n");
    for k in &kept {
        record.push_str(k);
        record.push('\n');
    }
    crate::atomic::write(&record_path, record.as_bytes(), Access::Private)?;
    let mut foreign = Vec::new();
    walk(dir, dir, &mut foreign)?;
    report.foreign = foreign
        .into_iter()
        .filter(|f| !kept.contains(f) && f != RECORD)
        .collect();
    report.foreign.sort();
    Ok(report)
}

/// The files the last render of `stack` wrote; none when there is no record yet.
fn read_record(path: &Path, stack: &str) -> Result<Vec<String>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    let owner = lines
        .next()
        .and_then(|l| l.strip_prefix("stack = "))
        .unwrap_or_default();
    if owner != stack {
        return Err(Error::Usage(format!(
            "`{}` holds the render of stack `{owner}`, not `{stack}`: render into another folder \
             (or delete `{}` to hand the folder over)",
            path.parent().unwrap_or(Path::new(".")).display(),
            path.display()
        )));
    }
    Ok(lines
        .map(str::trim)
        // Only relative paths inside the folder: a hand-edited record cannot point elsewhere.
        .filter(|l| !l.is_empty() && !l.starts_with('/') && !l.split('/').any(|s| s == ".."))
        .map(String::from)
        .collect())
}

/// Remove the folders between `file` and `root` that removing `file` left empty.
fn remove_empty_parents(root: &Path, file: &Path) {
    let mut cur = file.parent();
    while let Some(d) = cur {
        if d == root || !d.starts_with(root) {
            break;
        }
        // Fails (and stops) on the first folder that still holds something: that is the point.
        if std::fs::remove_dir(d).is_err() {
            break;
        }
        cur = d.parent();
    }
}

/// Every file under `dir` as a `/`-separated path relative to `root`, hidden entries skipped
/// (a `.git` folder is nobody's render).
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), Error> {
    let rerr = |source| Error::Read {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(rerr)? {
        let entry = entry.map_err(rerr)?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type().map_err(rerr)?.is_dir() {
            walk(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(parts.join("/"));
        }
    }
    Ok(())
}

/// An object's text as `render` writes it: an env file as the file itself.
pub fn rendered_text(stack: &str, o: &crate::resource::DesiredObject) -> String {
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
        ResourceId::Systemd { host: None, unit } => format!("systemd/{unit}"),
        ResourceId::EnvFile {
            host: None, path, ..
        } => {
            format!("systemd/env/{}", path.rsplit('/').next().unwrap_or(path))
        }
        // Another host's units in a folder of their own, as they would be on that host.
        ResourceId::Systemd {
            host: Some(h),
            unit,
        } => format!("hosts/{h}/{unit}"),
        ResourceId::EnvFile {
            host: Some(h),
            path,
            ..
        } => format!("hosts/{h}/env/{}", path.rsplit('/').next().unwrap_or(path)),
    }
}
