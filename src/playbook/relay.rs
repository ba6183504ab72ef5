//! Relay targets (`transport: relay`): a machine runner cannot reach itself (Windows 2000: no
//! SSH, no WinRM, no PowerShell) whose commands another target, `via`, runs with a command
//! line of the playbook's (`run`, e.g. `psexec \\old-sbs ... cmd /c {command}`).

use std::collections::BTreeMap;

use super::Target;

/// Where a relay's `run` template takes the command.
pub const COMMAND: &str = "{command}";

/// A relay target's `via` and `run`, as validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// The target that runs the commands.
    pub via: String,
    /// The command line `via` runs, with [`COMMAND`] once.
    pub run: String,
}

/// Characters a command cannot hold when a `cmd` target relays it: `cmd` expands `%NAME%`
/// even inside double quotes and ends a command at a line break, and a `"` would end the
/// quoted argument. Keep in step with the transport's relay.
pub fn cmd_refuses(command: &str) -> Option<char> {
    command
        .chars()
        .find(|c| matches!(c, '"' | '%' | '\n' | '\r'))
}

/// The targets from `name` to the first one that is not a relay: `[name, via, via's via...]`.
/// Stops at a target that is missing or already seen (validation refuses both).
pub fn chain<'a>(targets: &'a BTreeMap<String, Target>, name: &str) -> Vec<&'a Target> {
    let mut out: Vec<&Target> = Vec::new();
    let mut next = Some(name);
    while let Some(n) = next {
        let Some(t) = targets.get(n) else { break };
        if out.iter().any(|s| s.name == t.name) {
            break;
        }
        out.push(t);
        next = t.relay.as_ref().map(|r| r.via.as_str());
    }
    out
}

/// Those of `targets` that are relays whose `via` target runs a Windows shell (psexec and
/// the like): proven nowhere yet against a real Windows 2000.
pub fn relayed_by_windows<'a>(pb: &'a super::Playbook, targets: &'a [String]) -> Vec<&'a str> {
    targets
        .iter()
        .filter(|name| {
            chain(&pb.targets, name)
                .iter()
                .skip(1)
                .any(|t| t.shell != super::ShellKind::Sh)
        })
        .map(String::as_str)
        .collect()
}
