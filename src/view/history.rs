//! `labctl history`: the stack's generations on this host, as a table or as JSON.

use std::path::Path;

use serde::Serialize;

use crate::generations::Generation;

/// The generations as a table, newest last, with where they are kept.
pub fn render_history(stack: &str, dir: &Path, all: &[Generation]) -> String {
    if all.is_empty() {
        return format!(
            "No generations of stack `{stack}` on this host yet (kept in `{}`): every apply that \
             changes something records one.\n",
            dir.display()
        );
    }
    let mut rows = vec![[
        "GEN".to_string(),
        "TIME".to_string(),
        "RESULT".to_string(),
        "FROM".to_string(),
        "BY".to_string(),
        "CHANGES".to_string(),
    ]];
    for g in all {
        let s = g.record.summary;
        let mut result = g.record.result.word().to_string();
        if let Some(n) = g.record.restored {
            result.push_str(&format!(" to {n}"));
        }
        rows.push([
            g.number.to_string(),
            g.time.clone(),
            result,
            g.source(),
            g.record.who.to_string(),
            format!("+{} ~{} -{}", s.add, s.change, s.destroy),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for g in all.iter().filter(|g| g.record.failure.is_some()) {
        out.push_str(&format!(
            "\ngeneration {}: {}\n",
            g.number,
            crate::sensitive::redact(g.record.failure.as_deref().unwrap_or_default())
        ));
    }
    out
}

#[derive(Serialize)]
struct Doc<'a> {
    format_version: &'static str,
    stack: &'a str,
    generations: Vec<Row<'a>>,
}

#[derive(Serialize)]
struct Row<'a> {
    number: u64,
    time: &'a str,
    result: &'static str,
    commit: Option<&'a str>,
    stack_sha256: &'a str,
    who: &'a crate::generations::Who,
    summary: crate::plan::Summary,
    failure: Option<String>,
    restored: Option<u64>,
}

/// The generations as one JSON document (no stack text: `labctl history` shows records, not
/// contents).
pub fn render_history_json(stack: &str, all: &[Generation]) -> String {
    let doc = Doc {
        format_version: "1",
        stack,
        generations: all
            .iter()
            .map(|g| Row {
                number: g.number,
                time: &g.time,
                result: g.record.result.word(),
                commit: g.record.commit.as_deref(),
                stack_sha256: &g.stack_sha256,
                who: &g.record.who,
                summary: g.record.summary,
                failure: g
                    .record
                    .failure
                    .as_deref()
                    .map(|f| crate::sensitive::redact(f).into_owned()),
                restored: g.record.restored,
            })
            .collect(),
    };
    let mut s = serde_json::to_string_pretty(&doc).expect("history serialises");
    s.push('\n');
    s
}
