//! The customer file's format: its keys, and what a customer may change about a step.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A customer file (format v1): a shared procedure and what differs for this customer.
/// Every key but `procedure` and `overrides` means what it means in a playbook and wins over
/// the procedure's: `window`, `name`, `description`, `on_failure` and `notify` replace it,
/// `vars`, `targets` and `groups` are merged name by name.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCustomer {
    /// This customer's cutover, e.g. "Acme SBS 2000 to SBS 2003 cutover". The journal belongs
    /// to it: a changed procedure does not reset the customer's progress.
    pub name: String,
    /// The shared procedure (a playbook file whose steps are used), relative to this file.
    pub procedure: String,
    /// Free text for the review document (default: the procedure's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The customer's business hours (replaces the procedure's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<crate::playbook::raw::RawWindow>,
    /// Template variables; each wins over the procedure's variable of that name.
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// The customer's machines; each replaces the procedure's target of that name.
    #[serde(default)]
    pub targets: BTreeMap<String, crate::playbook::raw::RawTarget>,
    /// Named lists of targets; each replaces the procedure's group of that name.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// Per step id: a customer's own estimate or timeout, or `skip: true` for a step the
    /// procedure marks `optional: true`.
    #[serde(default)]
    pub overrides: BTreeMap<String, RawOverride>,
    /// What `apply` does after a failed step (replaces the procedure's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<crate::playbook::raw::OnFailure>,
    /// Where to tell people what happens (replaces the procedure's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<crate::playbook::raw::RawSink>,
    /// Where this customer's journal is (replaces the procedure's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// What a customer changes about one step of the procedure.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOverride {
    /// This customer's estimate (e.g. 6h for a larger share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<String>,
    /// This customer's timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Leave the step out; only for steps marked `optional: true` in the procedure.
    #[serde(default)]
    pub skip: bool,
}

pub const CUSTOMER_KEYS: &[&str] = &[
    "name",
    "procedure",
    "description",
    "window",
    "vars",
    "targets",
    "groups",
    "overrides",
    "on_failure",
    "notify",
    "state",
];
pub const OVERRIDE_KEYS: &[&str] = &["estimate", "timeout", "skip"];
