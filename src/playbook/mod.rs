//! Playbooks: the YAML format, loading, and validation into a checked model.
//!
//! Loading runs in three passes, each reporting every problem it finds: the positioned tree
//! (`source`) and its shape check (`structure`), then serde into the `raw` types, then
//! `validate` into [`Playbook`]. Nothing here touches a machine or writes a file.

pub mod compose;
pub mod diagnostic;
pub mod notify;
pub mod raw;
pub mod relay;
pub mod schema;
pub mod source;
mod structure;
pub mod template;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::SignedDuration;

pub use compose::{Composition, GivenVars};
pub use diagnostic::Diagnostic;
pub use raw::{BusinessHoursPolicy, OnFailure, ShellKind, TransportKind, WhenClosed, WinrmAuth};

use crate::secret::SecretRef;
use crate::window::Window;

/// Largest playbook accepted. Real ones are a few hundred KiB at most; the cap bounds the
/// memory and time any input can cost.
pub const MAX_PLAYBOOK_BYTES: u64 = 8 * 1024 * 1024;

/// Target name used for the pair of a manual step: the operator, not a machine.
pub const OPERATOR: &str = "operator";

/// A validated playbook: every reference resolved, every template rendered for every target.
#[derive(Debug, Clone)]
pub struct Playbook {
    /// The path as the user gave it (shown in messages).
    pub path: PathBuf,
    /// The directory relative paths in the playbook are resolved against.
    pub dir: PathBuf,
    /// SHA-256 of the playbook file's bytes; for a customer file (or with `--var`/`--vars`),
    /// over the customer file's, the procedure's and the vars files' hashes and every `--var`.
    pub sha256: String,
    /// For a customer file or given variables: where the merged parts came from.
    pub composition: Option<Composition>,
    pub name: String,
    pub description: Option<String>,
    pub window: Window,
    /// The IANA name, for display; None when there are no business hours.
    pub timezone: Option<String>,
    pub when_closed: WhenClosed,
    pub vars: BTreeMap<String, serde_json::Value>,
    pub targets: BTreeMap<String, Target>,
    pub groups: BTreeMap<String, Vec<String>>,
    pub steps: Vec<Step>,
    pub on_failure: OnFailure,
    /// Every local file the playbook sends (scripts, uploads), with its SHA-256.
    pub files: Vec<FileRef>,
    /// Where notifications go (`notify:`), in playbook order.
    pub notify: Vec<notify::Sink>,
    /// The journal's location from `state:`: a file resolved against [`Playbook::dir`], or a
    /// `postgres://` URL without a password. `--state` and RUNNER_STATE win over it.
    pub state: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileRef {
    /// As written in the playbook.
    pub written: String,
    /// Resolved against the playbook's directory.
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub transport: TransportKind,
    pub host: Option<String>,
    /// The effective port (defaults applied); None for local targets.
    pub port: Option<u16>,
    pub https: bool,
    pub user: Option<String>,
    pub password: Option<SecretRef>,
    /// Resolved key path.
    pub key: Option<PathBuf>,
    pub passphrase: Option<SecretRef>,
    /// Resolved known_hosts path; None means the user's `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// The effective SSH keepalive interval (default applied); None for other transports.
    pub keepalive: Option<std::time::Duration>,
    pub shell: ShellKind,
    pub auth: Option<WinrmAuth>,
    /// WinRM TLS trust: resolved `ca_file`, `cert_sha256` as written, `insecure`.
    pub ca_file: Option<PathBuf>,
    pub cert_sha256: Option<String>,
    pub insecure: bool,
    /// WinRM over plain HTTP without message encryption, explicitly allowed.
    pub allow_unencrypted: bool,
    /// The `ssh` target this one is reached through (`jump`), if any.
    pub jump: Option<String>,
    /// Jump hosts from `~/.ssh/config`'s `ProxyJump` (`ssh_config: true`, no `jump`), the one
    /// reached directly first.
    pub proxy_hops: Vec<ProxyHop>,
    /// What was taken from `~/.ssh/config` (`ssh_config: true`), e.g. `HostName 10.0.0.5`.
    pub from_ssh_config: Vec<String>,
    pub vars: BTreeMap<String, serde_json::Value>,
    /// The effective reboot command (the target's own or the shell's default).
    pub reboot_command: String,
    /// The effective command printing the boot id.
    pub boot_id_command: String,
    /// `transport: relay`: the target that runs this one's commands, and how.
    pub relay: Option<Relay>,
}

pub use relay::Relay;

impl Target {
    /// "ssh root@127.0.0.2:22" — what the plan and errors show; never a secret.
    pub fn address(&self) -> String {
        match self.transport {
            TransportKind::Local => "local".to_string(),
            TransportKind::Relay => match &self.relay {
                Some(r) => format!("relay via {}: {}", r.via, r.run),
                None => "relay".to_string(),
            },
            kind => {
                let scheme = match kind {
                    TransportKind::Winrm if self.https => "winrm+https",
                    TransportKind::Winrm => "winrm",
                    _ => "ssh",
                };
                let user = self
                    .user
                    .as_deref()
                    .map(|u| format!("{u}@"))
                    .unwrap_or_default();
                let host = self.host.as_deref().unwrap_or("?");
                match self.port {
                    Some(p) => format!("{scheme} {user}{host}:{p}"),
                    None => format!("{scheme} {user}{host}"),
                }
            }
        }
    }
}

/// A jump host given by `~/.ssh/config`'s `ProxyJump`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHop {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Step {
    /// Position in the playbook, from 0.
    pub index: usize,
    pub id: String,
    pub name: Option<String>,
    pub phase: Option<String>,
    /// `on` as written (targets and groups).
    pub on: Vec<String>,
    /// Targets after expanding groups, without duplicates, in order; `[operator]` for a
    /// manual step.
    pub targets: Vec<String>,
    pub action: Action,
    pub ok_codes: Vec<i64>,
    pub check: Option<String>,
    pub rollback: Option<String>,
    pub estimate: Option<SignedDuration>,
    pub timeout: Option<SignedDuration>,
    pub retries: u32,
    pub retry_delay: SignedDuration,
    pub idempotent: bool,
    pub point_of_no_return: bool,
    /// `changes: none`: the step only reads (or stages what nothing uses yet), so a missing
    /// rollback is no concern.
    pub changes_nothing: bool,
    pub business_hours: BusinessHoursPolicy,
    pub deadline: Option<Deadline>,
    /// Exit codes that mean "success, and reboot now".
    pub reboot_on: Vec<i64>,
    /// `detach` as written; see [`Step::detached_on`] for the effective value.
    pub detach: Option<bool>,
    /// The line of the step's `id`, for messages.
    pub line: usize,
    /// The step rendered for each of its targets, in `targets` order.
    pub rendered: Vec<Rendered>,
}

impl Step {
    pub fn title(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    pub fn is_manual(&self) -> bool {
        matches!(self.action, Action::Manual(_))
    }

    /// Whether a pair of this step left in doubt (its runner died, its link was lost) may simply
    /// run again: an idempotent step, or an upload. An upload left in doubt has not been followed
    /// by any later step, and it only ever replaces its destination by a verified copy of the
    /// same reviewed file, so doing it again gives the same result. (It is not `idempotent` for
    /// the renamed-step and other-journal checks: there, later steps may have changed the file.)
    pub fn redone_in_doubt(&self) -> bool {
        self.idempotent || matches!(self.action, Action::Upload { .. })
    }

    /// Every target the step talks to: its pair targets, and a copy's source, whose
    /// credentials it needs too.
    pub fn machines(&self) -> impl Iterator<Item = &str> {
        let source = match &self.action {
            Action::Copy { from, .. } => Some(from.as_str()),
            _ => None,
        };
        self.targets.iter().map(String::as_str).chain(source)
    }

    /// Copies and fetches verify what they wrote by its SHA-256 and replace the destination
    /// only then, so running one again gives the same result: they are idempotent whatever
    /// the step says.
    pub fn transfers(&self) -> bool {
        matches!(self.action, Action::Copy { .. } | Action::Fetch { .. })
    }

    /// The estimate the window gate uses: a step without one counts as zero.
    pub fn gate_estimate(&self) -> SignedDuration {
        self.estimate.unwrap_or(SignedDuration::ZERO)
    }

    pub fn rendered_for(&self, target: &str) -> Option<&Rendered> {
        self.rendered.iter().find(|r| r.target == target)
    }

    /// Whether this step runs detached on `target`: as written, else for `run` steps estimated
    /// at [`DETACH_FROM`] or more.
    /// A relay target's steps run attached unless `detach` says otherwise (which validation
    /// refuses): its far end has no job folder.
    pub fn detached_on(&self, target: &Target) -> bool {
        let by_estimate = target.relay.is_none() && self.estimate.is_some_and(|e| e >= DETACH_FROM);
        let wanted = self.detach.unwrap_or(by_estimate);
        wanted && matches!(self.action, Action::Run(_))
    }
}

/// Steps estimated at this or longer run detached by default.
pub const DETACH_FROM: SignedDuration = SignedDuration::from_mins(15);

/// How long a reboot may take unless the step says otherwise.
pub const DEFAULT_REBOOT_TIMEOUT: SignedDuration = SignedDuration::from_mins(20);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Run(String),
    Script(FileRef),
    Upload {
        src: FileRef,
        dest: String,
    },
    /// A file from the target `from` to the target `to` (the step's one pair target).
    Copy {
        from: String,
        path: String,
        to: String,
        dest: String,
    },
    /// A file from the step's target to this machine; `dest` as written (a template).
    Fetch {
        path: String,
        dest: String,
    },
    Manual(String),
    Reboot {
        timeout: SignedDuration,
    },
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Run(_) => "run",
            Action::Script(_) => "script",
            Action::Upload { .. } => "upload",
            Action::Copy { .. } => "copy",
            Action::Fetch { .. } => "fetch",
            Action::Manual(_) => "manual",
            Action::Reboot { .. } => "reboot",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    pub after: String,
    pub within: SignedDuration,
}

/// A step as it will run on one target: templates rendered with that target's variables.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rendered {
    pub target: String,
    /// The command, script path, upload (`src -> dest`) or manual instructions.
    pub action: RenderedAction,
    pub check: Option<String>,
    pub rollback: Option<String>,
    /// SHA-256 over what decides whether this pair's work is "the same work": the rendered
    /// action (with script and upload contents' hashes), the check and the ok codes, and the
    /// step's `env` and `stdin` as written (references, never secret values). A resume
    /// refuses to trust an old success when this changed.
    pub def_hash: String,
    /// The environment variables the command, check and rollback get, in name order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// The secret the command gets on its standard input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<SecretRef>,
}

/// One environment variable of a step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EnvVar {
    pub name: String,
    pub value: EnvValue,
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvValue {
    /// Plain text, written in the playbook.
    Plain(String),
    /// A secret, read when the step runs.
    Secret(SecretRef),
}

impl std::fmt::Display for EnvVar {
    /// `ADMIN_PW = <secret from env SBS_ADMIN_PASSWORD>`, or `MODE = "fast"`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            EnvValue::Plain(v) => write!(f, "{} = {v:?}", self.name),
            EnvValue::Secret(r) => write!(f, "{} = {}", self.name, secret_origin(r)),
        }
    }
}

/// `<secret from env NAME>` or `<secret from file PATH>`: how the plan names a secret.
pub fn secret_origin(r: &SecretRef) -> String {
    match r {
        SecretRef::Env(n) => format!("<secret from env {n}>"),
        SecretRef::File(p) => format!("<secret from file {}>", p.display()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RenderedAction {
    Run {
        command: String,
    },
    Script {
        path: PathBuf,
        sha256: String,
    },
    Upload {
        src: PathBuf,
        sha256: String,
        bytes: u64,
        dest: String,
    },
    /// From `from` (reached at `from_address`) to the pair's target. The address is part of
    /// the definition: a source that moved to another machine is other work.
    Copy {
        from: String,
        from_address: String,
        path: String,
        dest: String,
    },
    /// From the pair's target to this machine, `dest` resolved against the folder of the file
    /// that names it.
    Fetch {
        path: String,
        dest: PathBuf,
    },
    Manual {
        instructions: String,
    },
    Reboot {
        command: String,
        boot_id_command: String,
        timeout_secs: i64,
    },
}

/// Why a playbook could not be loaded: every problem found, in file order.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render_all(.0))]
pub struct LoadError(pub Vec<Diagnostic>);

fn render_all(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    let n = diags.len();
    out.push_str(&format!(
        "{n} error{} found; nothing was run and nothing was written",
        if n == 1 { "" } else { "s" }
    ));
    out
}

/// Reads, parses and validates a playbook file.
pub fn load(path: &Path) -> Result<Playbook, LoadError> {
    validate::load(path, &GivenVars::default(), None)
}

/// [`load`] with variables given on the command line (`--var`, `--vars`), and, for
/// `runner validate`, the fit check of [`load_checking_fit`].
pub fn load_with(
    path: &Path,
    given: &GivenVars,
    fit: Option<FitFrom>,
) -> Result<Playbook, LoadError> {
    validate::load(path, given, fit)
}

/// The instant from which `runner validate` looks for a gap between business hours long enough
/// for each step, and whether it is the real time or `RUNNER_NOW`.
#[derive(Debug, Clone, Copy)]
pub struct FitFrom {
    pub at: jiff::Timestamp,
    pub simulated: bool,
}

/// [`load`], and also refuses a step that fits no gap between business hours on the real
/// calendar (holidays, daylight saving) within the planning horizon from `from`, or up to the
/// last listed holiday if that is later. Only `runner validate` asks this: whether a step fits
/// depends on when you ask, and the other commands must still read a playbook whose long
/// weekend is over.
pub fn load_checking_fit(path: &Path, from: FitFrom) -> Result<Playbook, LoadError> {
    validate::load(path, &GivenVars::default(), Some(from))
}

pub use crate::digest::sha256_hex;
