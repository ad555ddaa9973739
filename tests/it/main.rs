//! labctl's integration tests, in one binary: linking the whole crate once instead of once per
//! test file is most of an incremental test run.

mod support;

mod bootstrap;
mod bundled;
mod collector;
mod dashboards;
mod docs;
mod doors;
mod faults;
mod fuzz_corpus;
mod gate;
mod gitops;
mod hardening;
mod hosts;
mod image;
mod ingest;
mod kube;
mod kube_host;
mod openbao;
mod plan_offline;
mod properties;
mod proxy;
mod reports;
mod saved;
mod systemd;
mod systemd_bundled;
mod telemetry;
mod ux;
mod validate;
