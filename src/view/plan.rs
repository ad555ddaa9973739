//! The plan as people read it (Terraform's layout) and as programs read it (stable JSON,
//! documented in `docs/plan-json.md`).

use serde::Serialize;
use similar::{ChangeTag, TextDiff};

use super::Styles;
use crate::plan::{Action, Change, Cost, DryRunAnswer, Impact, Place, Plan, Summary};
use crate::resource::ResourceId;
use crate::stack::Plane;

/// What a plan compares the stack with: said when there are no changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base<'a> {
    /// The live cluster and host.
    Live,
    /// Nothing (`--offline`).
    Empty,
    /// The stack as committed at a git revision (`--base REV`).
    Rev(&'a str),
}

impl Base<'_> {
    /// `The stack matches the live state.`, as the sentence after `No changes.`
    pub fn matches(&self) -> String {
        match self {
            Base::Live => "The stack matches the live state.".into(),
            Base::Empty => "The stack renders nothing.".into(),
            Base::Rev(rev) => format!("The stack matches `{rev}`."),
        }
    }
}

/// The human plan: legend, each change with its diff, and the summary line last.
pub fn render_plan_human(plan: &Plan, s: Styles) -> String {
    render_plan_human_against(plan, Base::Live, s)
}

/// [`render_plan_human`] for a plan against `base`. Secret values are masked twice over: by
/// their marks in each [`crate::plan::Body`], and in the whole text by the process's redactor.
pub fn render_plan_human_against(plan: &Plan, base: Base<'_>, s: Styles) -> String {
    crate::sensitive::redact(&human(plan, base, s)).into_owned()
}

fn human(plan: &Plan, base: Base<'_>, s: Styles) -> String {
    // A plan of several hosts groups its changes by where they happen and counts each place;
    // a plan of the cluster and this machine alone reads as it always has.
    let places = if plan.hosts().is_empty() {
        Vec::new()
    } else {
        plan.places()
    };
    if plan.is_empty() {
        let mut out = if plan.unreached.is_empty() {
            format!("{} {}\n", s.bold("No changes."), base.matches())
        } else {
            format!("{} on the hosts planned.\n", s.bold("No changes"))
        };
        if !plan.unreached.is_empty() {
            per_place(&mut out, &places, plan, s);
        }
        if let Some(c) = unread(plan) {
            out.push_str(&format!("{}\n", s.dim(&c)));
        }
        quiet_notes(&mut out, plan, s);
        partial(&mut out, plan, s);
        return out;
    }
    let mut out = String::new();
    let mut used: Vec<Action> = plan.actionable().map(|c| c.action).collect();
    used.sort();
    used.dedup();
    out.push_str("Resource actions are indicated with the following symbols:\n");
    for a in &used {
        let what = match a {
            Action::Create => "create",
            Action::Update => "update in-place",
            Action::Delete => "destroy",
            Action::Replace => "destroy and then create replacement",
            Action::Adopt => "adopt: take over what this stack does not own (needs `--adopt`)",
            Action::NoOp => continue,
        };
        out.push_str(&format!("  {} {what}\n", glyph(*a, s)));
    }
    out.push_str("\nlabctl will perform the following actions:\n");
    if places.is_empty() {
        for c in plan.actionable() {
            out.push('\n');
            change(&mut out, c, s);
        }
    } else {
        for (place, _) in &places {
            let here: Vec<&Change> = plan
                .actionable()
                .filter(|c| Place::of(&c.id) == *place)
                .collect();
            if here.is_empty() {
                continue;
            }
            let head = match place {
                Place::Cluster => "cluster:".to_string(),
                other => format!("host {}:", other.name()),
            };
            out.push_str(&format!("\n{}\n", s.bold(&head)));
            for c in here {
                out.push('\n');
                change(&mut out, c, s);
            }
        }
    }
    quiet_notes(&mut out, plan, s);
    let Summary {
        add,
        change,
        destroy,
    } = plan.summary();
    out.push_str(&format!(
        "\n{} {add} to add, {change} to change, {destroy} to destroy.\n",
        s.bold("Plan:")
    ));
    per_place(&mut out, &places, plan, s);
    let refused = plan.refused().count();
    if refused > 0 {
        out.push_str(&format!(
            "{} {refused} of these changes would fail: the server refuses {} in a dry run.\n",
            s.red("Failing:"),
            if refused == 1 { "it" } else { "them" }
        ));
    }
    if let Some(c) = unread(plan) {
        out.push_str(&format!("{}\n", s.dim(&c)));
    }
    partial(&mut out, plan, s);
    out
}

/// One line per place of a plan of several hosts: its counts, `no changes`, or why it was not
/// planned.
fn per_place(out: &mut String, places: &[(Place, Option<Summary>)], plan: &Plan, s: Styles) {
    for (place, summary) in places {
        let line = match summary {
            Some(sum) if *sum == Summary::default() => "no changes.".to_string(),
            Some(Summary {
                add,
                change,
                destroy,
            }) => format!("{add} to add, {change} to change, {destroy} to destroy."),
            None => {
                let why = plan
                    .unreached
                    .iter()
                    .find(|u| u.host == place.name())
                    .map_or("", |u| u.why.as_str());
                s.red(&format!("not planned: {why}"))
            }
        };
        out.push_str(&format!("  {}: {line}\n", place.name()));
    }
}

/// What a plan of several hosts says per host, as JSON: each host's counts, or why it was not
/// planned.
#[derive(Serialize)]
pub(crate) struct JsonHost {
    host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<Summary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The hosts of a plan of several hosts (empty for the cluster and this machine alone).
pub(crate) fn json_hosts(plan: &Plan) -> Vec<JsonHost> {
    if plan.hosts().is_empty() {
        return Vec::new();
    }
    plan.places()
        .into_iter()
        .filter(|(p, _)| *p != Place::Cluster)
        .map(|(p, summary)| JsonHost {
            error: summary.is_none().then(|| {
                plan.unreached
                    .iter()
                    .find(|u| u.host == p.name())
                    .map(|u| u.why.clone())
                    .unwrap_or_default()
            }),
            host: p.name().to_string(),
            summary,
        })
        .collect()
}

/// The sentence saying which secrets a plan did not read (and so did not compare).
pub(crate) fn unread(plan: &Plan) -> Option<String> {
    (!plan.unread_secrets.is_empty()).then(|| {
        format!(
            "Secret values are not compared: this plan read no secret ({}); a plan against the live planes does.",
            plan.unread_secrets
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Terraform's "resource targeting is in effect": a cut-down plan says so after its summary.
fn partial(out: &mut String, plan: &Plan, s: Styles) {
    if let Some((head, rest)) = targeting(plan) {
        out.push_str(&format!("\n{} {rest}\n", s.yellow(head)));
    }
}

/// What a plan cut down by `--target`/`--exclude` says of itself: a heading and the sentence.
pub(crate) fn targeting(plan: &Plan) -> Option<(&'static str, String)> {
    let t = plan.targeting.as_ref()?;
    let flags: Vec<String> = (t.targets.iter().map(|p| format!("--target '{p}'")))
        .chain(t.excludes.iter().map(|p| format!("--exclude '{p}'")))
        .collect();
    Some((
        "Resource targeting is in effect:",
        format!(
            "this plan is partial ({}): {} change(s) left out. It may not be all the stack \
             asks for; plan without them to see everything.",
            flags.join(" "),
            t.left_out
        ),
    ))
}

/// Notes on resources that need no action (a volume kept from pruning, a unit's drop-ins) still
/// matter to the reader.
fn quiet_notes(out: &mut String, plan: &Plan, s: Styles) {
    let quiet: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::NoOp && !c.notes.is_empty())
        .collect();
    if quiet.is_empty() {
        return;
    }
    out.push_str("\nNotes on resources without changes:\n");
    for c in quiet {
        for n in &c.notes {
            out.push_str(&format!("  {}\n", s.dim(&format!("# {}: {n}", c.id))));
        }
    }
}

fn glyph(a: Action, s: Styles) -> String {
    match a {
        Action::Create => s.green(a.glyph()),
        Action::Update => s.yellow(a.glyph()),
        Action::Delete => s.red(a.glyph()),
        Action::Replace => s.yellow(a.glyph()),
        Action::Adopt => s.red(a.glyph()),
        Action::NoOp => a.glyph().into(),
    }
}

fn change(out: &mut String, c: &Change, s: Styles) {
    let impact = if c.impact.is_empty() {
        String::new()
    } else {
        format!(
            " ({})",
            c.impact
                .iter()
                .map(Impact::text)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    out.push_str(&format!(
        "  {}\n",
        s.bold(&format!("# {} will be {}{impact}", c.id, c.action.verb()))
    ));
    for n in &c.notes {
        out.push_str(&format!("  {}\n", s.dim(&format!("# ({n})"))));
    }
    if let Some(why) = c.refused() {
        out.push_str(&format!(
            "  {}\n",
            s.red(&format!(
                "# FAILS: the server refuses it (dry run): {}",
                super::error::refusal(why)
            ))
        ));
    }
    out.push_str(&format!("  {} {}\n", glyph(c.action, s), address(&c.id)));
    // With `--server-dry-run`, the result shown is what the server would store.
    let after = match &c.dry_run {
        Some(DryRunAnswer::Stored(stored)) => Some(stored),
        _ => c.after.as_ref(),
    };
    match (&c.before, after) {
        (None, Some(after)) => lines(out, &after.shown(None), "+", s),
        (Some(before), None) => lines(out, &before.shown(None), "-", s),
        (Some(before), Some(after)) => unified(
            out,
            &before.shown_before(after),
            &after.shown(Some(before)),
            s,
        ),
        (None, None) => {}
    }
}

fn address(id: &ResourceId) -> String {
    match id {
        ResourceId::Kube { api_version, .. } => format!("{id} ({api_version})"),
        ResourceId::Systemd { .. } => id.to_string(),
        ResourceId::EnvFile { unit, .. } => format!("{id} (read by {unit})"),
    }
}

fn lines(out: &mut String, text: &str, sign: &str, s: Styles) {
    for l in text.lines() {
        let line = format!("{sign} {l}").trim_end().to_string();
        out.push_str("      ");
        out.push_str(&if sign == "+" {
            s.green(&line)
        } else {
            s.red(&line)
        });
        out.push('\n');
    }
}

fn unified(out: &mut String, before: &str, after: &str, s: Styles) {
    let diff = TextDiff::from_lines(before, after);
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        out.push_str(&format!("      {}\n", s.cyan(&hunk.header().to_string())));
        for ch in hunk.iter_changes() {
            let text = ch.value().trim_end_matches('\n');
            let line = match ch.tag() {
                ChangeTag::Delete => s.red(&format!("- {text}")),
                ChangeTag::Insert => s.green(&format!("+ {text}")),
                ChangeTag::Equal => format!("  {text}"),
            };
            out.push_str(format!("      {line}").trim_end());
            out.push('\n');
        }
    }
}

/// Version of the JSON plan format; bumped on any incompatible change.
pub const JSON_FORMAT_VERSION: &str = crate::plan::saved::FORMAT_VERSION;

#[derive(Serialize)]
struct JsonPlan<'a> {
    format_version: &'static str,
    changes_present: bool,
    /// Changes the server refused in a dry run (`--server-dry-run`).
    changes_failing: usize,
    summary: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    targeting: Option<&'a crate::plan::Targeting>,
    /// With several hosts: each host's counts, or why it was not planned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hosts: Vec<JsonHost>,
    changes: Vec<JsonChange<'a>>,
    preconditions: Vec<crate::plan::saved::JsonPrecondition<'a>>,
}

/// One change as JSON: its content shown as views show it (sensitive values redacted).
#[derive(Serialize)]
struct JsonChange<'a> {
    address: String,
    id: &'a ResourceId,
    component: &'a str,
    action: Action,
    before: Option<String>,
    after: Option<String>,
    impact: &'a [Impact],
    notes: &'a [String],
    /// The server's refusal in a dry run: present only when it refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
}

/// The JSON plan: every change (no-ops included), in plan order, pretty-printed.
pub fn render_plan_json(plan: &Plan) -> String {
    let doc = JsonPlan {
        format_version: JSON_FORMAT_VERSION,
        changes_present: !plan.is_empty(),
        changes_failing: plan.refused().count(),
        summary: plan.summary(),
        targeting: plan.targeting.as_ref(),
        hosts: json_hosts(plan),
        preconditions: crate::plan::saved::json_preconditions(plan),
        changes: plan
            .changes
            .iter()
            .map(|c| JsonChange {
                address: c.id.to_string(),
                id: &c.id,
                component: &c.component,
                action: c.action,
                before: c.before.as_ref().map(|b| match &c.after {
                    Some(a) => b.shown_before(a),
                    None => b.shown(None),
                }),
                after: match &c.dry_run {
                    Some(DryRunAnswer::Stored(stored)) => Some(stored),
                    _ => c.after.as_ref(),
                }
                .map(|a| a.shown(c.before.as_ref())),
                impact: &c.impact,
                notes: &c.notes,
                failure: c.refused().map(ToString::to_string),
            })
            .collect(),
    };
    let mut s = serde_json::to_string_pretty(&doc).expect("plan serialises");
    s.push('\n');
    crate::sensitive::redact(&s).into_owned()
}

/// The `-v` line of what a phase cost: `kube: 12 API requests in 85 ms (observe)`,
/// `systemd: 9 D-Bus calls in 4 ms`.
pub fn render_cost(cost: &Cost) -> String {
    let systemd = match &cost.host {
        Some(h) => format!("systemd on `{h}`"),
        None => "systemd".to_string(),
    };
    match (cost.plane, cost.phase) {
        (Plane::Kube, phase) => format!("{} ({phase})", cost.stats.line("kube", "API requests")),
        (Plane::Systemd, "observe") => cost.stats.line(&systemd, "D-Bus calls"),
        (Plane::Systemd, phase) => cost
            .stats
            .line(&systemd, &format!("D-Bus calls to {phase}")),
    }
}
