//! Where the merged playbook's parts came from, for the plan and the review.

use std::path::PathBuf;

use serde::Serialize;

/// Where the merged playbook's parts came from, for the plan and the review.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Composition {
    /// The procedure, when the file is a customer file.
    pub procedure: Option<SourceFile>,
    /// `--vars` files, in order.
    pub vars_files: Vec<SourceFile>,
    /// Per-step values the customer file sets.
    pub overrides: Vec<Override>,
    /// Optional steps the customer leaves out.
    pub skipped: Vec<Skipped>,
    /// Variables given on the command line (`--var`, `--vars`).
    pub given: Vec<GivenVar>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFile {
    pub path: PathBuf,
    /// The procedure's `name`, if it has one.
    pub name: Option<String>,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Override {
    pub step: String,
    pub key: String,
    pub value: String,
    /// What the procedure says, if anything.
    pub procedure_value: Option<String>,
    /// `file:line:column` of the customer's value.
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub step: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GivenVar {
    pub name: String,
    pub value: String,
    /// `--var` or the `--vars` file's path.
    pub from: String,
}
