//! Errors as the user reads them; stack problems are shown in place with a caret.

use miette::{GraphicalReportHandler, GraphicalTheme, NamedSource, SourceSpan};

use super::Styles;
use crate::error::{ApiStatus, Error, MissingSecret, Remedy, group_missing, missing_line};
use crate::source::{Problem, SourceFile};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
struct Located {
    message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("here")]
    span: Option<SourceSpan>,
    #[help]
    help: Option<String>,
}

/// The text printed to stderr for `e`, with every secret value masked (a server may echo a
/// value back in its refusal).
pub fn render_error(e: &Error, styles: Styles) -> String {
    crate::sensitive::redact(&error_text(e, styles)).into_owned()
}

fn error_text(e: &Error, styles: Styles) -> String {
    match e {
        Error::Invalid { file, problems } => {
            let mut out = String::new();
            let mut problems: Vec<&Problem> = problems.iter().collect();
            problems.sort_by_key(|p| p.span.as_ref().map_or(usize::MAX, |s| s.start));
            for p in &problems {
                out.push_str(&problem(file, p, styles));
            }
            let n = problems.len();
            out.push_str(&format!(
                "{} `{}` has {n} problem{}\n",
                styles.red("error:"),
                file.path.display(),
                if n == 1 { "" } else { "s" }
            ));
            out
        }
        Error::MissingSecrets { missing } => {
            let mut out = format!(
                "{} {} secret{} without a value (nothing was rendered or changed):\n",
                styles.red("error:"),
                missing.len(),
                if missing.len() == 1 { "" } else { "s" }
            );
            for (cause, secrets) in group_missing(missing) {
                out.push_str(&format!("  - {}\n", missing_line(&cause, &secrets)));
            }
            out.push_str(&secrets_advice(missing, false));
            out
        }
        Error::Sealed {
            addr,
            blocked,
            others,
        } => {
            let mut out = format!(
                "{} OpenBao at `{addr}` is sealed (it seals itself whenever it restarts): \
                 nothing was rendered or changed\n  - it holds {}\n",
                styles.red("error:"),
                blocked
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for (cause, secrets) in group_missing(others) {
                out.push_str(&format!("  - {}\n", missing_line(&cause, &secrets)));
            }
            out.push_str(&secrets_advice(others, true));
            out
        }
        Error::ApplyFailed {
            failed,
            hosts,
            done,
        } => {
            let mut out = format!("{} apply failed:\n", styles.red("error:"));
            for f in failed {
                out.push_str(&format!("  - {f}\n"));
            }
            for h in hosts {
                out.push_str(&format!("  - {h}\n"));
            }
            if !done.is_empty() {
                out.push_str(&format!(
                    "applied on {}; a new run applies the rest once the failures are fixed\n",
                    done.iter()
                        .map(|h| format!("`{h}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            out
        }
        Error::Unreached { hosts } => {
            let mut out = format!(
                "{} {} host{} could not be planned (the plan above covers the others):\n",
                styles.red("error:"),
                hosts.len(),
                if hosts.len() == 1 { "" } else { "s" }
            );
            for h in hosts {
                out.push_str(&format!("  - {h}\n"));
            }
            out
        }
        other => format!("{} {}\n", styles.red("error:"), other.report()),
    }
}

/// What to do about secrets without a value, chosen from their causes.
fn secrets_advice(missing: &[MissingSecret], sealed: bool) -> String {
    let mut out = String::from("what to do:\n");
    if sealed {
        out.push_str(
            "  - unseal it: `bao operator unseal` once per unseal key (up to the threshold), or \
             `labctl bootstrap --unseal --keys-file FILE` with the keys file bootstrap wrote\n",
        );
    }
    if missing.iter().any(|m| m.store) {
        out.push_str(
            "  - on a fresh host, `labctl bootstrap` starts OpenBao, initialises and unseals it, \
             and fills every secret the stack needs; on a set-up one it fills only what is \
             missing\n",
        );
    }
    out.push_str("  - `labctl render --redact` shows what renders, without any secret value\n");
    if let Some(m) = missing.first() {
        out.push_str(&format!(
            "  - `{}=...` gives a secret's value for one run, whatever its source \
             (`LABCTL_SECRET_` and the name upper-cased, `-` as `_`)\n",
            crate::stack::override_var(&m.name)
        ));
    }
    out
}

/// The server's refusal of a change, with what the command line can do about a conflict.
pub(crate) fn refusal(status: &ApiStatus) -> String {
    if status.code == 409 && !status.conflicts.is_empty() {
        format!("{status}; {}", Remedy::ForceConflicts)
    } else {
        status.to_string()
    }
}

fn problem(file: &SourceFile, p: &Problem, styles: Styles) -> String {
    let path = file.path.display().to_string();
    let Some(span) = p.span.clone() else {
        let mut s = format!("{} {path}: {}\n", styles.red("error:"), p.message);
        if let Some(h) = &p.help {
            s.push_str(&format!("  help: {h}\n"));
        }
        return s;
    };
    let (line, col) = file.line_col(span.start);
    let d = Located {
        message: p.message.clone(),
        src: NamedSource::new(&path, file.text.clone()),
        span: Some(SourceSpan::from(
            span.start..span.end.max(span.start + 1).min(file.text.len().max(1)),
        )),
        help: p.help.clone(),
    };
    let theme = if styles.color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let mut body = String::new();
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_links(false)
        .with_context_lines(1)
        .with_width(120);
    if handler.render_report(&mut body, &d).is_err() {
        body = String::new();
    }
    // The message is already on the `path:line:col:` line above; keep only miette's snippet.
    let body: String = body
        .lines()
        .skip_while(|l| !l.contains('╭'))
        .map(|l| format!("{l}\n"))
        .collect();
    let body = if body.is_empty() { body } else { body + "\n" };
    format!(
        "{} {path}:{line}:{col}: {}\n{body}",
        styles.red("error:"),
        p.message
    )
}
