//! The forms of single values (a DNS label, a quantity, an image, a duration, a calendar): each
//! says in the user's words why a value is not of its form.

/// Why a value is not of its form, in the user's words; the caller places it at the value's key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotOfForm(pub String);

impl From<&str> for NotOfForm {
    fn from(why: &str) -> Self {
        NotOfForm(why.to_string())
    }
}

/// A secret's name: what `secret("...")` takes and `LABCTL_SECRET_<NAME>` can spell.
///
/// # Errors
/// What is wrong with it, for a message.
pub fn secret_name(s: &str) -> Result<(), NotOfForm> {
    if s.is_empty() {
        return Err("empty".into());
    }
    if let Some(ch) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(NotOfForm(format!(
            "`{ch}` is not allowed (lowercase letters, digits, `-` and `_`)"
        )));
    }
    Ok(())
}

/// A DNS-1123 label: what Kubernetes accepts as a namespace or Service name.
pub fn dns_label(s: &str) -> Result<(), NotOfForm> {
    if s.is_empty() || s.len() > 63 {
        return Err("must be 1 to 63 characters".into());
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("only lowercase letters, digits and `-` are allowed".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

pub(super) fn dns_subdomain(s: &str) -> Result<(), NotOfForm> {
    if s.is_empty() || s.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    s.split('.').try_for_each(dns_label)
}

pub(super) fn bucket(s: &str) -> Result<(), NotOfForm> {
    if s.len() < 3 {
        return Err("S3 bucket names have at least 3 characters".into());
    }
    dns_label(s)
}

/// A systemd unit base name (without the `.service` suffix).
pub(super) fn unit_name(s: &str) -> Result<(), NotOfForm> {
    if s.is_empty() || s.len() > 240 {
        return Err("must be 1 to 240 characters".into());
    }
    if let Some(ch) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":_.-\\".contains(*c)))
    {
        return Err(NotOfForm(format!("`{ch}` is not allowed in unit names")));
    }
    if s.contains('.') {
        return Err("give the base name only; labctl adds `.service`/`.timer`".into());
    }
    Ok(())
}

/// A Kubernetes resource quantity: `100m`, `1.5Gi`, `2e3`.
pub fn quantity(s: &str) -> Result<(), NotOfForm> {
    let num_end = s
        .char_indices()
        .find(|(i, ch)| {
            !(ch.is_ascii_digit() || *ch == '.' || (*i == 0 && (*ch == '+' || *ch == '-')))
        })
        .map_or(s.len(), |(i, _)| i);
    let (num, suffix) = s.split_at(num_end);
    let digits = num.trim_start_matches(['+', '-']);
    if digits.is_empty() || digits == "." || digits.matches('.').count() > 1 {
        return Err("expected a number such as `512Mi`, `2Gi` or `250m`".into());
    }
    const SUFFIXES: [&str; 14] = [
        "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T",
    ];
    let exp = suffix
        .strip_prefix(['e', 'E'])
        .map(|e| e.trim_start_matches(['+', '-']));
    if SUFFIXES.contains(&suffix) || suffix == "P" || suffix == "E" {
        return Ok(());
    }
    if let Some(e) = exp
        && !e.is_empty()
        && e.bytes().all(|b| b.is_ascii_digit())
    {
        return Ok(());
    }
    Err(NotOfForm(format!(
        "unknown suffix `{suffix}` (use Ki, Mi, Gi, Ti, m, k, M, G, ...)"
    )))
}

/// A container image reference: `[registry[:port]/]path[:tag][@digest]`.
pub fn image_ref(s: &str) -> Result<(), NotOfForm> {
    if s.is_empty() {
        return Err("empty".into());
    }
    if s.chars().any(char::is_whitespace) {
        return Err("contains white space".into());
    }
    let (name, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((algo, hex)) = d.split_once(':') else {
            return Err(NotOfForm(format!("digest `{d}` must be `algorithm:hex`")));
        };
        if algo.is_empty() || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NotOfForm(format!("digest `{d}` is malformed")));
        }
    }
    // A tag is after the last ':' that comes after the last '/' (a registry port comes before it).
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            && !t.starts_with(['.', '-']);
        if !ok {
            return Err(NotOfForm(format!("tag `{t}` is malformed")));
        }
    }
    let mut parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        let host_ok = host
            .split_once(':')
            .is_none_or(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
        if !host_ok {
            return Err(NotOfForm(format!("registry `{host}` is malformed")));
        }
    }
    for p in parts {
        let ok = !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && p.as_bytes()[0].is_ascii_alphanumeric()
            && p.as_bytes()[p.len() - 1].is_ascii_alphanumeric();
        if !ok {
            return Err(NotOfForm(format!(
                "path component `{p}` must be lowercase letters, digits and separators"
            )));
        }
    }
    Ok(())
}

/// A Prometheus/Go style duration: `30s`, `5m`, `1h30m`, `744h`, `15d`.
pub fn duration(s: &str) -> Result<(), NotOfForm> {
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty".into());
    }
    while !rest.is_empty() {
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(
                "expected a number followed by a unit, such as `30s`, `5m` or `1h30m`".into(),
            );
        }
        rest = &rest[n..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return Err("the unit must be one of ms, s, m, h, d, w, y".into()),
        }
    }
    // The compact form above is what Prometheus and Loki read; humantime (the agents' parser)
    // catches what it cannot hold.
    humantime::parse_duration(s)
        .map(|_| ())
        .map_err(|_| "too long a duration".into())
}

/// A Go `time.Duration`: like [`duration`] without days, weeks or years.
pub(super) fn go_duration(s: &str) -> Result<(), NotOfForm> {
    duration(s)?;
    if s.contains(['d', 'w', 'y']) {
        return Err("Go durations have no days, weeks or years: use hours, such as `336h`".into());
    }
    Ok(())
}

/// The common forms of systemd's `OnCalendar=` (systemd.time(7)): shorthands, and
/// `[weekdays] [date] [time]` with `*`, lists, `..` ranges and `/` repetitions.
pub fn on_calendar(s: &str) -> Result<(), NotOfForm> {
    const SHORT: [&str; 10] = [
        "minutely",
        "hourly",
        "daily",
        "weekly",
        "monthly",
        "yearly",
        "annually",
        "quarterly",
        "semiannually",
        "semi-annually",
    ];
    let s = s.trim();
    if SHORT.contains(&s.to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    let mut words: Vec<&str> = s.split_whitespace().collect();
    // A trailing timezone is allowed.
    if words.len() > 1 && words.last().is_some_and(|w| *w == "UTC" || w.contains('/')) {
        words.pop();
    }
    if words.is_empty() || words.len() > 3 {
        return Err("expected `[weekdays] [date] [time]` or a shorthand such as `daily`".into());
    }
    let mut i = 0;
    if words.len() == 1 && words[0].chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(NotOfForm(format!(
            "`{}` is not a shorthand (minutely, hourly, daily, weekly, monthly, yearly, ...) \
             and has no time",
            words[0]
        )));
    }
    if words[i]
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
    {
        weekdays(words[i])?;
        i += 1;
    }
    let mut seen_date = false;
    let mut seen_time = false;
    for w in &words[i..] {
        if w.contains(':') && !seen_time {
            fields(w, ':', &[(0, 23), (0, 59), (0, 59)], 2, "time")?;
            seen_time = true;
        } else if w.contains('-') && !seen_date && !seen_time {
            fields(w, '-', &[(1970, 2199), (1, 12), (1, 31)], 2, "date")?;
            seen_date = true;
        } else {
            return Err(NotOfForm(format!(
                "`{w}` is neither a date (`*-*-*`) nor a time (`03:00`)"
            )));
        }
    }
    if i == words.len() {
        return Err("nothing after the weekdays: add a time such as `09:00`".into());
    }
    Ok(())
}

pub(super) fn weekdays(w: &str) -> Result<(), NotOfForm> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let day = |d: &str| {
        let l = d.to_ascii_lowercase();
        let full = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        if DAYS.contains(&l.as_str()) || full.contains(&l.as_str()) {
            Ok(())
        } else {
            Err(NotOfForm(format!(
                "`{d}` is not a weekday (Mon, Tue, ... Sun)"
            )))
        }
    };
    for part in w.split(',') {
        match part.split_once("..") {
            Some((a, b)) => {
                day(a)?;
                day(b)?;
            }
            None => day(part)?,
        }
    }
    Ok(())
}

pub(super) fn fields(
    w: &str,
    sep: char,
    ranges: &[(u32, u32)],
    min: usize,
    what: &str,
) -> Result<(), NotOfForm> {
    let parts: Vec<&str> = w.split(sep).collect();
    // Dates may omit the year (`*-01`... is month-day); times may omit seconds.
    if parts.len() < min || parts.len() > ranges.len() {
        return Err(NotOfForm(format!("`{w}` is not a valid {what}")));
    }
    let ranges = if what == "date" {
        &ranges[ranges.len() - parts.len()..]
    } else {
        &ranges[..parts.len()]
    };
    for (part, &(lo, hi)) in parts.iter().zip(ranges) {
        for item in part.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, st)) => (r, Some(st)),
                None => (item, None),
            };
            if let Some(st) = step
                && !st.parse::<u32>().is_ok_and(|n| n > 0)
            {
                return Err(NotOfForm(format!(
                    "repetition `/{st}` in `{w}` must be a positive number"
                )));
            }
            if range == "*" {
                continue;
            }
            for n in range.split("..") {
                // Seconds may carry a fraction.
                let n = n.split('.').next().unwrap_or(n);
                match n.parse::<u32>() {
                    Ok(v) if (lo..=hi).contains(&v) => {}
                    _ => {
                        return Err(NotOfForm(format!(
                            "`{n}` in `{w}` is out of range {lo}..{hi}"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_forms() {
        for ok in [
            "daily",
            "hourly",
            "weekly",
            "*-*-* 03:00:00",
            "Mon..Fri 09:00",
            "Sat,Sun 10:30",
            "*-*-01 00:00",
            "2026-12-24 18:00:00",
            "*:0/15",
            "Mon *-*-* 00:00:00",
            "*-*-* 03:00 UTC",
        ] {
            assert_eq!(on_calendar(ok), Ok(()), "{ok}");
        }
        for bad in [
            "sometimes",
            "*-*-* 25:00",
            "Mon..Fry 09:00",
            "Mon",
            "*-13-* 00:00",
            "*:0/0",
            "",
        ] {
            assert!(on_calendar(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quantities() {
        for ok in ["1", "100m", "1.5Gi", "512Mi", "2e3", "1E", "0.5"] {
            assert_eq!(quantity(ok), Ok(()), "{ok}");
        }
        for bad in ["", "Gi", "1GB", "1.2.3Mi", "ten", "1 Gi"] {
            assert!(quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn images() {
        for ok in [
            "nginx",
            "grafana/grafana:11.4.0",
            "quay.io/minio/minio:RELEASE.2024-12-18T13-15-44Z",
            "localhost:5000/x/y:1",
            "registry.example.com/a/b@sha256:0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(image_ref(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Grafana/grafana",
            "grafana:",
            "a b",
            "x@sha256:zz",
            "reg:abc/x",
        ] {
            assert!(image_ref(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        for ok in ["30s", "5m", "1h30m", "744h", "15d", "500ms"] {
            assert_eq!(duration(ok), Ok(()), "{ok}");
        }
        for bad in ["", "5", "m5", "5 minutes", "1.5h", "99999999999999999h"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }
}
