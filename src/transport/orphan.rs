//! A command the runner may have left running on a target, and how a step's command is
//! identified before it starts so that a later `apply` can find and stop it.

/// A command the runner lost sight of while it may still run on the target: its connection
/// died mid-command (sshd may not notice a link that failed silently, and then keeps the
/// command running), or stopping it failed. Enough to find it again and stop it, and small
/// enough to be a journal note, so that the next `apply` can do so if this one dies first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Orphan {
    /// A POSIX `sh` command: the process group led by `pid` (unknown when the connection died
    /// before the command reported it), whose leader carries `token` in its command line.
    /// The token is what tells it apart from an unrelated process that got the same PID.
    Process { pid: Option<u32>, token: String },
    /// A command in a WinRM shell, stopped by deleting the shell.
    WinrmShell { shell_id: String },
}

impl Orphan {
    /// The journal note's text, read back by [`Orphan::from_note`].
    pub fn to_note(&self) -> String {
        match self {
            Orphan::Process {
                pid: Some(pid),
                token,
            } => format!("process pid={pid} token={token}"),
            Orphan::Process { pid: None, token } => format!("process token={token}"),
            Orphan::WinrmShell { shell_id } => format!("winrm-shell id={shell_id}"),
        }
    }

    pub fn from_note(note: &str) -> Option<Orphan> {
        let mut words = note.split_whitespace();
        let kind = words.next()?;
        let mut fields = std::collections::BTreeMap::new();
        for w in words {
            let (k, v) = w.split_once('=')?;
            fields.insert(k, v);
        }
        let safe =
            |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        match kind {
            "process" => {
                let token = fields.get("token").copied().filter(|t| safe(t))?;
                let pid = match fields.get("pid") {
                    Some(p) => Some(p.parse().ok().filter(|&p: &u32| p > 1)?),
                    None => None,
                };
                Some(Orphan::Process {
                    pid,
                    token: token.to_string(),
                })
            }
            "winrm-shell" => {
                // WinRM 1.1 (Windows Server 2003) prefixes shell ids with `uuid:`.
                let id = fields.get("id").copied().filter(|t| {
                    let plain = t.strip_prefix("uuid:").unwrap_or(t);
                    safe(plain)
                })?;
                Some(Orphan::WinrmShell {
                    shell_id: id.to_string(),
                })
            }
            _ => None,
        }
    }

    /// For messages: "pid 1234", or what else identifies it.
    pub fn describe(&self) -> String {
        match self {
            Orphan::Process { pid: Some(pid), .. } => format!("pid {pid}"),
            Orphan::Process { pid: None, token } => format!("found by its token {token}"),
            Orphan::WinrmShell { shell_id } => format!("WinRM shell {shell_id}"),
        }
    }
}

/// Receives a step command's identity once the target gives it one (a WinRM shell) and before
/// the command is sent; the command goes ahead only when it returns `Ok` (the engine journals
/// the identity here, so that a later `apply` can stop the command even if this runner dies).
/// `Err` carries why the command was not started.
pub type Announce<'a> = &'a mut dyn FnMut(&Orphan) -> Result<(), String>;

/// How a step's command can be found again on the target, settled before it starts: a later
/// `apply` stops it by this before any check or retry, even when the runner that started it
/// died (a power cut while the link was silently dead, or `kill -9`).
pub struct Identity<'a> {
    /// The token an `sh` command carries in its command line (its wrapper's `$0`), already in
    /// the journal: with it the command's process group is found, and its PID, without a round
    /// trip before the command starts.
    pub token: &'a str,
    /// For transports whose target names the command itself (WinRM's shell id).
    pub announce: Announce<'a>,
}

/// What [`super::Transport::stop_orphan`] found on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanStop {
    /// It was still running; it and everything it started are stopped now.
    Stopped,
    /// It had already ended.
    Ended,
    /// Its PID now belongs to another process, so it had ended; that process was left alone.
    PidReused,
    /// Its WinRM shell was deleted, which stops whatever still ran in it.
    ShellDeleted,
}

/// The `reason` of a [`super::TransportError::KillFailed`] about an [`Orphan`].
pub const ORPHAN_REASON: &str = "was lost";
