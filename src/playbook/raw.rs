//! The playbook exactly as written: serde types that mirror the YAML, with loose scalar types
//! (durations, times and zones are text here). `validate` turns them into the checked model.
//!
//! These types are also the source of `runner schema`, so doc comments here become the
//! descriptions editors show. The key lists in `structure` must match the fields here; a test
//! keeps them in step.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A cutover playbook (format v1).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPlaybook {
    /// What this cutover is, e.g. "Acme SBS 2000 to SBS 2003 cutover".
    pub name: String,
    /// Free text for the review document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When the customer works: no step may start if it could still run in business hours.
    pub window: RawWindow,
    /// Template variables, available as `{{ name }}` in commands.
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// The machines steps run on, by name.
    #[serde(default)]
    pub targets: BTreeMap<String, RawTarget>,
    /// Named lists of targets, usable in a step's `on`.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// The steps, run in the listed order.
    pub steps: Vec<RawStep>,
    /// What `apply` does after a failed step: stop (default) or roll back what ran.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Where to tell people what happens while nobody watches: webhooks, ntfy topics, email.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<RawSink>,
    /// Where the journal is: an SQLite file (relative to the playbook) or a PostgreSQL server
    /// `postgres://user@host:port/database` (no password). `--state` and RUNNER_STATE win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    #[default]
    Stop,
    Rollback,
}

/// The customer's business hours.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    /// IANA time zone name, e.g. America/Chicago. Required unless business_hours is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Business-hours rules; an empty list means no restriction.
    pub business_hours: Vec<RawHours>,
    /// Whole local dates (YYYY-MM-DD) without business hours.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// No step may still be running this long before business hours (e.g. 15m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<String>,
    /// What apply does when nothing may start: stop (checkpoint and exit 3) or wait.
    #[serde(default)]
    pub when_closed: WhenClosed,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WhenClosed {
    #[default]
    Stop,
    Wait,
}

/// One business-hours rule.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHours {
    /// A range (mon-fri), a list ([mon, wed, fri]) or one day (sat).
    pub days: RawDays,
    /// Local start time, "HH:MM".
    pub from: String,
    /// Local end time, "HH:MM"; at or before `from` means the next day.
    pub to: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RawDays {
    One(String),
    List(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    Ssh,
    Winrm,
    Local,
    /// Through another target (`via`), which runs each command with the `run` template.
    Relay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShellKind {
    Sh,
    Cmd,
    Powershell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WinrmAuth {
    Basic,
    Ntlm,
}

/// A machine steps run on.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// How to reach it: ssh, winrm, local, or relay (through another target: `via`, `run`).
    pub transport: TransportKind,
    /// Host name or address (ssh, winrm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port; default ssh 22, winrm 5985 (5986 with https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// WinRM over HTTPS.
    #[serde(default)]
    pub https: bool,
    /// Login user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password, by reference only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<RawSecretRef>,
    /// SSH private key file (`~` is expanded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Passphrase of the SSH key, by reference only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<RawSecretRef>,
    /// known_hosts file to check the SSH host key against (default ~/.ssh/known_hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<String>,
    /// SSH keepalive interval (default 15s, at least 1s): a keepalive goes out whenever the
    /// server was quiet that long, and three intervals without anything from the server drop
    /// the connection, like OpenSSH's ServerAliveInterval with ServerAliveCountMax 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<String>,
    /// How run, check and rollback execute: sh, cmd or powershell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<ShellKind>,
    /// WinRM authentication: basic (HTTPS only) or ntlm (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<WinrmAuth>,
    /// WinRM over HTTPS: PEM file of the CA certificates to trust instead of the system's
    /// (relative to the playbook), for servers with certificates from an internal CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// WinRM over HTTPS: trust exactly the certificate with this SHA-256 fingerprint (64 hex
    /// digits, `:` allowed), e.g. a self-signed one checked with the server's administrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_sha256: Option<String>,
    /// WinRM over HTTPS: accept any certificate. Anyone on the network path can then read the
    /// password; the plan shows a warning.
    #[serde(default)]
    pub insecure: bool,
    /// WinRM over plain HTTP without message encryption (Basic sends the password readably).
    /// Only for isolated test networks; the plan shows a warning.
    #[serde(default)]
    pub allow_unencrypted: bool,
    /// SSH through a jump host: the name of another `ssh` target of this playbook, which
    /// carries this target's connection (like OpenSSH's ProxyJump). That target may itself
    /// use a `jump`; each hop checks its own host key and logs in with its own credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump: Option<String>,
    /// `ssh` only: take what this target does not set (host name, port, user, key, jump
    /// hosts) from `~/.ssh/config`, looking up `host` as a `Host` alias, as `ssh host` would.
    /// The plan shows what was taken.
    #[serde(default)]
    pub ssh_config: bool,
    /// The target's own template variables (override playbook vars).
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Command that reboots the target (default: `shutdown -r now` with sh, `shutdown /r /t 5`
    /// on Windows shells).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_command: Option<String>,
    /// Command that prints an id that changes with every boot (default: the kernel's boot_id
    /// with sh, the last boot time on Windows shells).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id_command: Option<String>,
    /// `relay` only: the target that runs this target's commands (any transport, itself
    /// possibly a relay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// `relay` only: the command line the `via` target runs for each command, with
    /// `{command}` where the command goes, quoted for the `via` target's shell, e.g.
    /// `psexec \\old-sbs -accepteula -nobanner cmd /c {command}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

/// A secret reference: exactly one of `env` or `file`. Literal secrets are refused.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSecretRef {
    /// Name of an environment variable holding the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Path of a file holding the secret (relative to the playbook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// Where a step runs: a target, a group, or a list of them.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RawOn {
    One(String),
    List(Vec<String>),
}

/// One step of the cutover. Exactly one of run, script, upload, copy, fetch, manual, reboot.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// Unique id, [a-z0-9_-]+; used by resume, mark and rollback.
    pub id: String,
    /// Human title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A label grouping steps in the review, e.g. "Phase 2 - Active Directory".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// A target, a group, or a list; several targets run in parallel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<RawOn>,
    /// Command run with the target's shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Local file sent to the target and run with its shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// A local file copied to the target and verified by SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<RawUpload>,
    /// A file copied from one target to another through the runner (no keys between the
    /// servers), verified by SHA-256. The step names both targets here and has no `on`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<RawCopy>,
    /// A file fetched from the step's target to this machine, verified by SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<RawFetch>,
    /// Instructions an operator carries out and confirms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<String>,
    /// Reboot the target and wait until it is back (its boot id changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot: Option<RawReboot>,
    /// Exit codes after which the target is rebooted (they count as success), e.g. [3010, 1641].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_on: Option<Vec<i64>>,
    /// Run the command detached on the target, so it survives a dropped connection or a
    /// runner crash (default: on for steps estimated at 15 minutes or more, on sh targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detach: Option<bool>,
    /// Exit codes that mean success (default `[0]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok_codes: Option<Vec<i64>>,
    /// Command run after success; must exit 0 for the step to count as done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Command that undoes the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
    /// Expected duration (e.g. 3h): used by the window gate and the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<String>,
    /// Longest the command may run before it is stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Extra attempts after a failure (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Pause between attempts (default 0s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay: Option<String>,
    /// Safe to run again after an interruption.
    #[serde(default)]
    pub idempotent: bool,
    /// Rollback never goes past this step.
    #[serde(default)]
    pub point_of_no_return: bool,
    /// refuse (default) or allow: allow only for read-only steps.
    #[serde(default)]
    pub business_hours: BusinessHoursPolicy,
    /// Must finish within `within` of the end of step `after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<RawDeadline>,
    /// `none` when the step changes nothing on its targets (a check, an inventory, a copy to
    /// a staging folder nothing uses yet): the review then does not ask for its rollback.
    #[serde(default)]
    pub changes: Changes,
    /// Environment variables of the command, its check and its rollback (run and script
    /// steps): `NAME: { env: VARIABLE }` or `NAME: { file: PATH }` for a secret, which is
    /// passed without ever being in a command line, the plan, the journal or a report; or
    /// `NAME: text` for an ordinary value, shown in the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, RawEnvValue>>,
    /// A secret given to the command on its standard input (followed by a newline, then the
    /// end of input): `{ env: VARIABLE }` or `{ file: PATH }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<RawSecretRef>,
    /// In a procedure: a customer file may leave this step out (`overrides: { ID: { skip: true } }`).
    #[serde(default)]
    pub optional: bool,
}

/// What a step changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Changes {
    /// Nothing: the step only reads. It may have no `rollback` and is no point of no return.
    #[serde(rename = "none")]
    Nothing,
    /// Its targets (the default).
    #[default]
    #[serde(rename = "target")]
    Target,
}

/// The value of a step's environment variable: a secret by reference, or plain text.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RawEnvValue {
    /// An ordinary value, shown in the plan (never a password: reference those).
    Plain(String),
    /// A secret: `{ env: VARIABLE }` or `{ file: PATH }`.
    Secret(RawSecretRef),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BusinessHoursPolicy {
    #[default]
    Refuse,
    Allow,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpload {
    /// Local file, relative to the folder of the file that names the step (in a procedure, the
    /// procedure's).
    pub src: String,
    /// Destination path on the target.
    pub dest: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCopy {
    /// The target the file is read from.
    pub from: String,
    /// The file's path on `from`.
    pub path: String,
    /// The target the file is written to.
    pub to: String,
    /// Destination path on `to`; an existing file there is replaced once the copy verified.
    pub dest: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFetch {
    /// The file's path on the target.
    pub path: String,
    /// Where it goes on this machine, relative to the folder of the file that names the step:
    /// the playbook, or in a procedure the procedure (not the customer file). With several
    /// targets it must differ per target, e.g. `inventory-{{ target.name }}.csv`. An existing
    /// file there is replaced once the fetched copy verified.
    pub dest: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawReboot {
    /// Longest wait for the target to come back (default 20m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDeadline {
    /// An earlier step's id.
    pub after: String,
    /// Duration from that step's end, e.g. 21d.
    pub within: String,
}

/// One place notifications go: exactly one of `webhook`, `ntfy` or `email`, and `on`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// An http(s) URL that receives a POST of a CloudEvents 1.0 JSON event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// An ntfy topic URL (e.g. `https://ntfy.sh/acme-cutover`): a POST of a readable message
    /// with Title, Priority and Tags headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ntfy: Option<String>,
    /// Mail over SMTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<RawEmail>,
    /// Which events: step-failed, operator-needed, window-closing, night-done, run-finished,
    /// run-stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<String>>,
}

/// Mail over SMTP.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    /// One address or a list.
    pub to: RawAddresses,
    /// The sender address.
    pub from: String,
    /// The mail server to hand messages to.
    pub smtp: RawSmtp,
}

/// One mail address or a list of them.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RawAddresses {
    One(String),
    List(Vec<String>),
}

/// An SMTP server (submission).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    /// Host name or address of the server.
    pub host: String,
    /// Port; default 587 with starttls, 465 with tls, 25 with none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// starttls (default), tls or none (the plan warns unless the host is loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<super::notify::SmtpTls>,
    /// Login user; with `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password, by reference only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<RawSecretRef>,
}
