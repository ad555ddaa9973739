//! The stack's own health gates (`[health.checks.<name>]`), run after every apply: an HTTP URL
//! that must answer 2xx or a command that must exit 0, each tried again until it passes or its
//! timeout runs out. (Units staying up and rollouts completing are apply's own gates.)

use std::time::{Duration, Instant};

use crate::error::Error;
use crate::stack::{Check, Stack};

/// How long between two tries of a check that did not pass yet.
const RETRY: Duration = Duration::from_millis(500);

/// Run every check of `stack`, all at once; the first that does not pass within its timeout fails
/// the gate, named.
///
/// # Errors
/// [`Error::GateFailed`] naming the check and why its last try failed.
pub async fn check(stack: &Stack) -> Result<(), Error> {
    let checks = stack.health.checks.iter().map(|(name, c)| async move {
        let timeout = humantime::parse_duration(&c.timeout).unwrap_or(Duration::from_secs(30));
        passes(name, c, timeout).await
    });
    let results = futures_util::future::join_all(checks).await;
    results.into_iter().collect()
}

async fn passes(name: &str, c: &Check, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let tried = tokio::time::timeout(left.max(Duration::from_millis(1)), once(c)).await;
        let why = match tried {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(why)) => why,
            Err(_) => "no answer".to_string(),
        };
        if Instant::now() + RETRY >= deadline {
            return Err(Error::GateFailed {
                gate: name.to_string(),
                why: format!(
                    "{why} (still, after {})",
                    humantime::format_duration(timeout)
                ),
            });
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// One try: the URL's status, or the command's exit.
async fn once(c: &Check) -> Result<(), String> {
    if let Some(url) = &c.url {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let res = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", crate::error::chain(&e)))?;
        return if res.status().is_success() {
            Ok(())
        } else {
            Err(format!("GET {url} answered {}", res.status()))
        };
    }
    let Some((program, args)) = c.command.as_deref().and_then(<[String]>::split_first) else {
        return Err("names neither a URL nor a command".into());
    };
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let last = said
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(format!(
        "`{}` exited with {}{}",
        c.command.as_deref().unwrap_or_default().join(" "),
        out.status,
        if last.is_empty() {
            String::new()
        } else {
            format!(": {}", last.trim())
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(checks: &str) -> Stack {
        crate::stack::parse(
            std::path::Path::new("stack.toml"),
            &format!("[stack]\nname = \"lab\"\n{checks}"),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_check_passes_or_fails_named_with_its_last_reason() {
        check(&stack(
            "[health.checks.ok]\ncommand = [\"/bin/sh\", \"-c\", \"exit 0\"]\ntimeout = \"2s\"\n",
        ))
        .await
        .unwrap();
        let e = check(&stack(
            "[health.checks.broken]\ncommand = [\"/bin/sh\", \"-c\", \"echo nope >&2; exit 3\"]\ntimeout = \"1s\"\n",
        ))
        .await
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("`broken`") && text.contains("exit status: 3") && text.contains("nope"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_check_that_passes_late_passes() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("up");
        let f = flag.display().to_string();
        let s = stack(&format!(
            "[health.checks.late]\ncommand = [\"/bin/test\", \"-e\", \"{f}\"]\ntimeout = \"10s\"\n"
        ));
        let touch = async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            std::fs::write(&flag, b"").unwrap();
        };
        let (r, ()) = tokio::join!(check(&s), touch);
        r.unwrap();
    }
}
