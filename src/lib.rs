//! labctl: one stack.toml declares a homelab's Kubernetes components and systemd units; labctl
//! renders them, plans them against what is live, and applies the plan.
//!
//! Data flow: [`stack::load`] → [`render::render`] → [`plan::diff`] against a [`plan::Live`] set →
//! a [`plan::Plan`] that [`view`] prints.

pub mod agent;
pub mod apply;
pub mod atomic;
pub mod backend;
pub mod cli;
pub mod error;
pub mod failpoint;
pub mod fuzz;
pub mod generations;
pub mod git;
pub mod lock;
pub mod metric;
pub mod observed;
pub mod ops;
pub mod output_dir;
pub mod par;
pub mod plan;
pub mod render;
pub mod resource;
pub mod schema_check;
pub mod secrets;
pub mod sensitive;
pub mod source;
pub mod stack;
pub mod telemetry;
pub mod view;
pub mod yaml;

mod run;

pub use run::{Hooks, run};
