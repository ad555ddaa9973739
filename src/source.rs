//! A source file and its problems, each located by a byte span that the view turns into
//! `file:line:col` and a caret under the line. Shared by the stack file's checks and the one
//! error type, so that neither depends on the other.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// The text of a stack file, kept so problems can be shown in place.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path as given by the user.
    pub path: PathBuf,
    /// Full text.
    pub text: String,
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    /// A table key.
    Key(&'a str),
    /// An array index.
    Index(usize),
}

/// A path of keys from the document root, e.g. `kube.grafana.node_port`.
pub type KeyPath<'a> = &'a [Seg<'a>];

/// One problem with the stack, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, lowercase, names in backticks.
    pub message: String,
    /// Byte range in the file, when the problem is in the file (not in a default).
    pub span: Option<Range<usize>>,
    /// A hint on how to fix it.
    pub help: Option<String>,
}

impl SourceFile {
    /// Keep a copy of `text` read from `path`.
    pub fn new(path: &Path, text: &str) -> Self {
        Self {
            path: path.to_path_buf(),
            text: text.to_string(),
        }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// Span of the value at `path`; when the path is not all in the file (a default that
    /// conflicts), the nearest enclosing key that is.
    pub fn locate(&self, path: KeyPath<'_>) -> Option<Range<usize>> {
        let root = DeTable::parse(&self.text).ok()?;
        let mut cur: Option<&toml::Spanned<DeValue<'_>>> = None;
        let mut best = None;
        for seg in path {
            let next = match (seg, cur.map(|v| v.get_ref())) {
                (Seg::Key(k), None) => find(root.get_ref(), k),
                (Seg::Key(k), Some(DeValue::Table(t))) => find(t, k),
                (Seg::Index(i), Some(DeValue::Array(a))) => a.get(*i).map(|v| (v.span(), v)),
                _ => None,
            };
            let Some((key_span, v)) = next else {
                return best;
            };
            best = Some(key_span);
            cur = Some(v);
        }
        cur.map(|v| v.span())
    }
}

fn find<'t, 'i>(
    table: &'t DeTable<'i>,
    key: &str,
) -> Option<(Range<usize>, &'t toml::Spanned<DeValue<'i>>)> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(k, v)| (k.span(), v))
}

impl Problem {
    /// The problem on one line, as logs and machine-read statuses show it:
    /// `stack.toml:3:7: message (help)`.
    pub fn one_line(&self, file: &SourceFile) -> String {
        let mut out = file.path.display().to_string();
        if let Some(span) = &self.span {
            let (line, col) = file.line_col(span.start);
            out.push_str(&format!(":{line}:{col}"));
        }
        out.push_str(&format!(": {}", self.message));
        if let Some(h) = &self.help {
            out.push_str(&format!(" ({h})"));
        }
        out
    }

    /// A problem at `span`.
    pub fn at(message: impl Into<String>, span: Option<Range<usize>>) -> Self {
        Self {
            message: message.into(),
            span,
            help: None,
        }
    }

    /// Add a hint.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}
