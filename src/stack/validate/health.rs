//! Rules on `[health]` and on what keeps the record of applies: each check names one URL or one
//! command with a timeout; generations are kept at all.

use super::formats::*;
use super::{Checker, dotted};
use crate::source::Seg;
use crate::stack::schema::Stack;
use Seg::Key as K;

pub(super) fn health(c: &mut Checker<'_>, stack: &Stack) {
    for (name, check) in &stack.health.checks {
        let at = [K("health"), K("checks"), K(name)];
        match (&check.url, &check.command) {
            (Some(_), Some(_)) | (None, None) => c.push(
                &at,
                format!("`{}` needs exactly one of `url` and `command`", dotted(&at)),
                Some(
                    "url = \"http://127.0.0.1:8085/healthz\", or command = [\"/usr/bin/true\"]"
                        .into(),
                ),
            ),
            (Some(url), None) if !(url.starts_with("http://") || url.starts_with("https://")) => c
                .push(
                    &[K("health"), K("checks"), K(name), K("url")],
                    format!("`{}.url` is not an http(s) URL: `{url}`", dotted(&at)),
                    None,
                ),
            (None, Some(cmd)) if cmd.first().is_none_or(|p| p.is_empty()) => c.push(
                &[K("health"), K("checks"), K(name), K("command")],
                format!("`{}.command` names no program", dotted(&at)),
                Some(
                    "the program first, then its arguments: [\"/usr/bin/curl\", \"-f\", \"...\"]"
                        .into(),
                ),
            ),
            _ => {}
        }
        c.check(
            &[K("health"), K("checks"), K(name), K("timeout")],
            &check.timeout,
            "duration",
            duration,
        );
    }
    if stack.host.generations == 0 {
        c.push(
            &[K("host"), K("generations")],
            "`host.generations` must keep at least one generation (rollback needs the last good one)"
                .into(),
            None,
        );
    }
    if stack.host.proxy.enabled {
        c.check(
            &[K("host"), K("proxy"), K("confirm_within")],
            &stack.host.proxy.confirm_within,
            "duration",
            duration,
        );
    }
}
