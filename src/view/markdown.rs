//! The plan as a pull-request comment (`plan -o markdown`), as tfcmt and Atlantis post it: the
//! summary line first, then one collapsible `<details>` block per change holding a fenced `diff`.
//! Secret values are already masked in the plan's contents; long plans are cut to fit a GitHub
//! comment, with a note saying so.

use similar::{ChangeTag, TextDiff};

use super::plan::Base;
use crate::plan::{Action, Change, Impact, Place, Plan, Summary};

/// GitHub rejects comments over 65,536 characters; stay well under, with room for the tail.
const BUDGET: usize = 60_000;
/// The most one change's diff may take, so one huge object cannot crowd out the rest.
const PER_CHANGE: usize = 20_000;

/// The markdown plan: summary first, a `<details>` block per change, a note when truncated.
pub fn render_plan_markdown(plan: &Plan, base: Base<'_>) -> String {
    crate::sensitive::redact(&markdown(plan, base)).into_owned()
}

fn markdown(plan: &Plan, base: Base<'_>) -> String {
    let mut out = String::from("### labctl plan\n\n");
    let places = if plan.hosts().is_empty() {
        Vec::new()
    } else {
        plan.places()
    };
    if plan.is_empty() {
        if plan.unreached.is_empty() {
            out.push_str(&format!("**No changes.** {}\n", base.matches()));
        } else {
            out.push_str("**No changes** on the hosts planned.\n\n");
            per_place(&mut out, plan, &places);
        }
        if let Some(c) = super::plan::unread(plan) {
            out.push_str(&format!("\n_{c}_\n"));
        }
        if let Some((head, rest)) = super::plan::targeting(plan) {
            out.push_str(&format!("\n> [!WARNING]\n> **{head}** {rest}\n"));
        }
        notes(&mut out, plan);
        return out;
    }
    let Summary {
        add,
        change,
        destroy,
    } = plan.summary();
    out.push_str(&format!(
        "**Plan:** {add} to add, {change} to change, {destroy} to destroy.\n\n"
    ));
    per_place(&mut out, plan, &places);
    let refused = plan.refused().count();
    if refused > 0 {
        out.push_str(&format!(
            "> [!CAUTION]\n> {refused} of these changes would fail: the server refuses them in a dry run.\n\n"
        ));
    }
    if let Some(c) = super::plan::unread(plan) {
        out.push_str(&format!("_{c}_\n\n"));
    }
    if let Some((head, rest)) = super::plan::targeting(plan) {
        out.push_str(&format!("> [!WARNING]\n> **{head}** {rest}\n\n"));
    }
    // With several hosts, grouped by where they happen, each group under its name.
    let mut changes: Vec<&Change> = plan.actionable().collect();
    if !places.is_empty() {
        changes.sort_by_key(|c| places.iter().position(|(p, _)| *p == Place::of(&c.id)));
    }
    let mut shown = 0;
    let mut heading = None;
    for c in &changes {
        let mut block = block(c);
        let place = Place::of(&c.id);
        if !places.is_empty() && heading.as_ref() != Some(&place) {
            let name = match &place {
                Place::Cluster => "cluster".to_string(),
                other => format!("host `{}`", other.name()),
            };
            block = format!("#### {name}\n\n{block}");
            heading = Some(place);
        }
        if out.len() + block.len() > BUDGET {
            break;
        }
        out.push_str(&block);
        shown += 1;
    }
    if shown < changes.len() {
        out.push_str(&format!(
            "> [!NOTE]\n> The plan is too long for one comment: {} of {} changes are not shown. \
             Run `labctl plan` to see them all.\n\n",
            changes.len() - shown,
            changes.len()
        ));
    }
    notes(&mut out, plan);
    out
}

/// One line per place of a plan of several hosts: its counts, or why it was not planned.
fn per_place(out: &mut String, plan: &Plan, places: &[(Place, Option<Summary>)]) {
    if places.is_empty() {
        return;
    }
    for (place, summary) in places {
        let line = match summary {
            Some(s) if *s == Summary::default() => "no changes".to_string(),
            Some(s) => format!(
                "{} to add, {} to change, {} to destroy",
                s.add, s.change, s.destroy
            ),
            None => format!(
                "**not planned**: {}",
                html(
                    plan.unreached
                        .iter()
                        .find(|u| u.host == place.name())
                        .map_or("", |u| u.why.as_str())
                )
            ),
        };
        out.push_str(&format!("- `{}`: {line}\n", place.name()));
    }
    out.push('\n');
}

/// One change: `<details>` with a summary line and its diff.
fn block(c: &Change) -> String {
    let impact = if c.impact.is_empty() {
        String::new()
    } else {
        let list: Vec<&str> = c.impact.iter().map(Impact::text).collect();
        format!(" ({})", list.join(", "))
    };
    let mut s = format!(
        "<details><summary><code>{} {}</code> will be {}{}</summary>\n\n",
        c.action.glyph(),
        html(&c.id.to_string()),
        c.action.verb(),
        html(&impact)
    );
    for n in &c.notes {
        s.push_str(&format!("- {}\n", html(n)));
    }
    if let Some(why) = c.refused() {
        s.push_str(&format!(
            "- **Fails:** the server refuses it (dry run): {}\n",
            html(&super::error::refusal(why))
        ));
    }
    if !c.notes.is_empty() || c.refused().is_some() {
        s.push('\n');
    }
    let body = diff_lines(c);
    let fence = "`".repeat(longest_backtick_run(&body).max(2) + 1);
    s.push_str(&format!("{fence}diff\n{body}{fence}\n\n</details>\n\n"));
    s
}

/// The change as diff lines (`+ `, `- `, `  `), cut to [`PER_CHANGE`] with a line saying so.
fn diff_lines(c: &Change) -> String {
    let mut lines: Vec<String> = Vec::new();
    match (&c.before, &c.after) {
        (None, Some(after)) => lines.extend(after.shown(None).lines().map(|l| format!("+ {l}"))),
        (Some(before), None) => lines.extend(before.shown(None).lines().map(|l| format!("- {l}"))),
        (Some(before), Some(after)) => {
            let (old, new) = (before.shown_before(after), after.shown(Some(before)));
            let diff = TextDiff::from_lines(&old, &new);
            for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
                lines.push(hunk.header().to_string());
                for ch in hunk.iter_changes() {
                    let text = ch.value().trim_end_matches('\n');
                    let sign = match ch.tag() {
                        ChangeTag::Delete => '-',
                        ChangeTag::Insert => '+',
                        ChangeTag::Equal => ' ',
                    };
                    lines.push(format!("{sign} {text}"));
                }
            }
        }
        (None, None) => {}
    }
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if out.len() + l.len() > PER_CHANGE {
            out.push_str(&format!("… {} more lines not shown\n", lines.len() - i));
            break;
        }
        out.push_str(l.trim_end());
        out.push('\n');
    }
    out
}

/// Notes on resources without an action (a volume kept from pruning) still matter to a reviewer.
fn notes(out: &mut String, plan: &Plan) {
    let quiet: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::NoOp)
        .flat_map(|c| {
            c.notes
                .iter()
                .map(move |n| format!("- `{}`: {}\n", c.id, html(n)))
        })
        .collect();
    if !quiet.is_empty() {
        out.push_str("Notes on resources without changes:\n\n");
        out.extend(quiet);
    }
}

fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn longest_backtick_run(s: &str) -> usize {
    let (mut best, mut cur) = (0, 0);
    for ch in s.chars() {
        cur = if ch == '`' { cur + 1 } else { 0 };
        best = best.max(cur);
    }
    best
}
