//! Semantic rules on a parsed stack. Every rule runs; every problem is reported in one pass.

mod formats;
mod health;
mod host;
mod hosts;
mod kube;
mod secrets;

use formats::*;
use health::health as health_checks;
use host::{host, pipelines, ports};
use hosts::hosts;
use kube::kube;
use secrets::secrets;

pub use formats::{NotOfForm, secret_name};
pub use secrets::{SecretUsage, secret_usage};

use super::schema::{Resources, Stack};
use crate::source::{Problem, Seg, SourceFile};

struct Checker<'a> {
    pub(super) file: &'a SourceFile,
    pub(super) problems: Vec<Problem>,
}

impl Checker<'_> {
    pub(super) fn push(&mut self, path: &[Seg<'_>], message: String, help: Option<String>) {
        let mut p = Problem::at(message, self.file.locate(path));
        p.help = help;
        self.problems.push(p);
    }

    fn check(
        &mut self,
        path: &[Seg<'_>],
        value: &str,
        what: &str,
        ok: fn(&str) -> Result<(), NotOfForm>,
    ) {
        if let Err(why) = ok(value) {
            self.push(
                path,
                format!("`{}` is not a valid {what}: {why}", dotted(path)),
                None,
            );
        }
    }

    pub(super) fn resources(&mut self, base: &[Seg<'_>], r: &Resources) {
        let mut p = base.to_vec();
        p.push(Seg::Key("resources"));
        for (key, v) in [
            ("cpu", Some(&r.cpu)),
            ("memory", Some(&r.memory)),
            ("memory_limit", r.memory_limit.as_ref()),
        ] {
            if let Some(v) = v {
                let mut q = p.clone();
                q.push(Seg::Key(key));
                self.check(&q, v, "Kubernetes quantity", quantity);
            }
        }
    }
}

pub(super) fn dotted(path: &[Seg<'_>]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

use Seg::Key as K;

/// Every semantic problem in `stack`, located in `file`.
pub fn validate(stack: &Stack, file: &SourceFile) -> Vec<Problem> {
    let mut c = Checker {
        file,
        problems: Vec::new(),
    };
    let st = &stack.stack;
    c.check(&[K("stack"), K("name")], &st.name, "stack name", dns_label);
    if st.namespace.is_some() {
        c.check(
            &[K("stack"), K("namespace")],
            st.namespace(),
            "namespace",
            dns_label,
        );
    }
    c.check(
        &[K("stack"), K("storage_class")],
        &st.storage_class,
        "storage class name",
        dns_subdomain,
    );
    c.check(
        &[K("stack"), K("labctl_image")],
        &st.labctl_image,
        "image reference",
        image_ref,
    );

    kube(&mut c, stack);
    host(&mut c, stack);
    hosts(&mut c, stack);
    ports(&mut c, stack);
    secrets(&mut c, stack);
    pipelines(&mut c, stack);
    health_checks(&mut c, stack);
    c.problems
}
