//! `runner`: cutover playbooks run over SSH, WinRM or locally, only outside business hours,
//! checkpointed in a journal so that any stop can be resumed.
//!
//! Data flows one way: [`playbook`] (load and validate) → [`plan`] (schedule and review) →
//! [`engine`] → [`transport`], with the [`journal`] beside the engine. [`window`] is the pure
//! business-hours rule everything else asks.

pub mod background;
pub mod clock;
pub mod digest;
pub mod engine;
pub mod exit;
pub mod follow;
pub mod journal;
pub mod notify;
pub mod ping;
pub mod plan;
pub mod playbook;
pub mod progress;
pub mod report;
pub mod resume;
pub mod secret;
pub mod serve;
pub mod status;
pub mod transport;
pub mod window;
