//! `runner`: cutover playbooks run over SSH, WinRM or locally, only outside business hours,
//! checkpointed in a journal so that any stop can be resumed.
//!
//! Data flows one way: [`playbook`] (load and validate) → [`plan`] (schedule and review) →
//! [`engine`] → [`transport`], with the [`journal`] beside the engine; [`targets`] turns the
//! playbook's targets into transports for the engine and `ping`. [`status`], [`report`] and
//! [`ping`] read; [`progress`] and [`notify`] follow the engine's events. Small shared things
//! are leaves anyone may use: [`window`] (the pure business-hours rule), [`duration`],
//! [`paths`], [`target_defaults`], [`digest`], [`secret`], [`clock`], [`exit`]. The test in
//! `src/layers.rs` keeps every import pointing this way.

pub mod background;
pub mod clock;
pub mod digest;
pub mod duration;
pub mod engine;
pub mod exit;
pub mod fdlimit;
pub mod follow;
pub mod journal;
#[cfg(test)]
mod layers;
pub mod notify;
pub mod paths;
pub mod ping;
pub mod plan;
pub mod playbook;
pub mod progress;
pub mod report;
pub mod resume;
pub mod secret;
pub mod serve;
pub mod ssh_config;
pub mod status;
pub mod target_defaults;
pub mod targets;
pub mod transport;
pub mod window;
