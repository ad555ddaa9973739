//! Secret values inside labctl: [`SecretValue`], whose formatting never shows it; the
//! process-wide redactor that masks every value seen in free text ([`register`], [`redact`]);
//! and [`Secrets`], where rendering gets a value for `secret("name")`. Where values come from
//! (OpenBao, the environment, files) is [`crate::secrets`]'s business.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// A secret's value. Only [`SecretValue::expose`] shows it; formatting prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }

    /// The value itself, for the one place that must write it (a rendered object, an env file).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl std::fmt::Display for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Shown in free text (errors, log lines, telemetry) where a secret value was.
pub const MASK: &str = "(sensitive value)";

/// Values shorter than this are masked where a field marks them (a Secret's `data`, an env
/// file) but not searched for in free text: masking every `ab` in a log line would garble it
/// without protecting much.
pub const MIN_SCANNED: usize = 4;

/// Every secret value this process has seen, and the forms it takes once encoded (base64 in a
/// Secret's `data`, JSON-escaped in a JSON plan): the process-wide redactor's list, longest first
/// so that a value is masked before any shorter one inside it.
static SEEN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remember `value` as sensitive, for the rest of the process: [`redact`] masks it (and its
/// encodings) from then on, and plans mark whatever holds it. Rendering calls this for every
/// value a template gets, so nothing that reaches output escapes it.
pub fn register(value: &str) {
    use base64::Engine as _;
    if value.len() < MIN_SCANNED {
        return;
    }
    let mut forms = vec![
        value.to_string(),
        base64::engine::general_purpose::STANDARD.encode(value),
    ];
    let json = serde_json::to_string(value).unwrap_or_default();
    let json = json.trim_matches('"');
    if json != value {
        forms.push(json.to_string());
    }
    let mut seen = SEEN
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut added = false;
    for f in forms {
        if !seen.contains(&f) {
            seen.push(f);
            added = true;
        }
    }
    if added {
        seen.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }
}

/// The registered values (see [`register`]), longest first.
pub fn registered() -> Vec<String> {
    SEEN.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// `text` with every registered secret value (and its encodings) replaced by [`MASK`]: for
/// error messages, log lines and telemetry, which have no fields to mark.
pub fn redact(text: &str) -> Cow<'_, str> {
    let seen = SEEN
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = Cow::Borrowed(text);
    for v in seen.iter() {
        if out.contains(v.as_str()) {
            out = Cow::Owned(out.replace(v.as_str(), MASK));
        }
    }
    out
}

/// Whether `text` holds a registered secret value.
pub fn holds_secret(text: &str) -> bool {
    let seen = SEEN
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    seen.iter().any(|v| text.contains(v.as_str()))
}

/// A secret lookup: the value of a name, `None` when it has none.
type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Where `secret("name")` gets its value: a lookup (resolved secrets, the environment, a map in
/// tests) or, for output that must not hold values, a marker per secret ([`Secrets::redacted`]).
/// There is no placeholder for a missing value: rendering fails naming every one.
///
/// A partial set ([`Secrets::only`]) has values for some names and markers for the rest: a plan
/// cut down to a selection reads only the secrets of what it keeps, and the objects it leaves
/// out render with markers that never reach a change.
#[derive(Clone)]
pub struct Secrets {
    lookup: Option<Arc<Lookup>>,
    /// With a lookup: the only names it is asked about; every other name is a marker.
    only: Option<Arc<std::collections::BTreeSet<String>>>,
}

impl Secrets {
    /// Secrets from a function (tests use a map).
    pub fn new(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Secrets {
            lookup: Some(Arc::new(lookup)),
            only: None,
        }
    }

    /// Secrets from the environment only: `LABCTL_SECRET_<NAME>` (see [`crate::stack::override_var`]); an
    /// empty variable is unset. The command line resolves `[secrets]` instead
    /// ([`crate::secrets::for_stack`]), which honours these variables too.
    pub fn from_env() -> Self {
        Secrets::new(|name| {
            std::env::var(crate::stack::override_var(name))
                .ok()
                .filter(|v| !v.is_empty())
        })
    }

    /// Resolved values by name (see [`crate::secrets::resolve`]).
    pub fn from_values(values: BTreeMap<String, SecretValue>) -> Self {
        Secrets::new(move |name| values.get(name).map(|v| v.expose().to_string()))
    }

    /// No values at all: every secret renders as [`redacted`] of its name. For `render --redact`
    /// and for plans that compare no values (`--offline`, `--base`).
    pub fn redacted() -> Self {
        Secrets {
            lookup: None,
            only: None,
        }
    }

    /// These secrets, but only for the names in `read`: every other name renders as its marker,
    /// as [`Secrets::redacted`] does.
    pub fn only(self, read: std::collections::BTreeSet<String>) -> Self {
        Secrets {
            only: self.lookup.is_some().then(|| Arc::new(read)),
            ..self
        }
    }

    /// Whether every value is replaced by a marker.
    pub fn is_redacted(&self) -> bool {
        self.lookup.is_none()
    }

    /// Whether `name` renders as its marker rather than a value.
    pub fn is_marker(&self, name: &str) -> bool {
        match (&self.lookup, &self.only) {
            (None, _) => true,
            (Some(_), Some(only)) => !only.contains(name),
            (Some(_), None) => false,
        }
    }

    /// The value of `name`: its marker when redacted (or not read), `None` when it has none.
    pub fn get(&self, name: &str) -> Option<String> {
        match &self.lookup {
            _ if self.is_marker(name) => Some(redacted(name)),
            Some(f) => f(name),
            None => Some(redacted(name)),
        }
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match (&self.lookup, &self.only) {
            (None, _) => "Secrets(redacted)",
            (Some(_), Some(_)) => "Secrets(partial)",
            (Some(_), None) => "Secrets(..)",
        })
    }
}

/// What a secret renders as when values are left out (`render --redact`, offline plans).
pub fn redacted(name: &str) -> String {
    format!("(redacted secret {name})")
}
