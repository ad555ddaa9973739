//! The test API server's tests, in one binary.

mod support;

mod api;
mod fidelity;
mod kubectl;
mod transcripts;
