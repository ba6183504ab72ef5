//! A target reached through another one: each command is put into a command line (the
//! playbook's `run` template, e.g. `psexec \\old-sbs -accepteula -nobanner cmd /c {command}`)
//! that the `via` target runs with its own shell, through its own transport. The output and
//! the exit code are those of that command line, passed through unchanged.
//!
//! `{command}` is quoted for the shell that reads the line, the `via` target's: one
//! single-quoted word for `sh` and PowerShell (everything literal, line breaks included); for
//! `cmd`, one double-quoted argument by the Microsoft C runtime's rules (how psexec and most
//! programs split their command line), in which `"`, `%` and line breaks cannot be given
//! literally and are refused.
//!
//! Files, environment variables and standard input do not cross a command line without
//! showing in it, so a relay refuses them (the playbook's validation already did).

use std::path::Path;

use super::shell::{ps_quote, sh_quote};
use super::{
    CommandExit, Control, FileDigest, Identity, Orphan, OrphanStop, Shell, Stream, Transport,
    TransportError,
};

/// Where the template takes the command.
pub const COMMAND: &str = "{command}";

pub struct RelayTransport {
    /// The relay target's name.
    name: String,
    /// The `via` target's transport, and the shell that reads the command line there.
    via: Box<dyn Transport>,
    via_shell: Shell,
    template: String,
}

impl RelayTransport {
    pub fn new(name: &str, via: Box<dyn Transport>, via_shell: Shell, template: &str) -> Self {
        RelayTransport {
            name: name.to_string(),
            via,
            via_shell,
            template: template.to_string(),
        }
    }

    /// The command line `via` runs for `command`.
    fn line(&self, command: &str, ctl: &Control) -> Result<String, TransportError> {
        let refused = |message: String| TransportError::NotStarted {
            target: self.describe(),
            message,
        };
        if ctl.has_input() {
            return Err(refused(
                "`env` and `stdin` cannot reach a command through a relay without showing on its command line".into(),
            ));
        }
        fill(&self.template, self.via_shell, command).map_err(refused)
    }
}

/// `template` with `{command}` replaced by `command`, quoted for `shell`.
pub fn fill(template: &str, shell: Shell, command: &str) -> Result<String, String> {
    if template.matches(COMMAND).count() != 1 {
        return Err(format!(
            "the relay's `run` line must hold `{COMMAND}` exactly once"
        ));
    }
    let quoted = match shell {
        Shell::Sh => sh_quote(command),
        Shell::PowerShell => ps_quote(command),
        Shell::Cmd => cmd_argument(command)?,
    };
    Ok(template.replacen(COMMAND, &quoted, 1))
}

/// `command` as one double-quoted argument that `cmd` leaves alone and the C runtime reads
/// back unchanged: backslashes before the closing quote are doubled.
fn cmd_argument(command: &str) -> Result<String, String> {
    if let Some(c) = command
        .chars()
        .find(|c| matches!(c, '"' | '%' | '\n' | '\r'))
    {
        return Err(format!(
            "the command holds {c:?}, which a cmd relay cannot pass on literally"
        ));
    }
    let trailing = command.len() - command.trim_end_matches('\\').len();
    Ok(format!("\"{command}{}\"", "\\".repeat(trailing)))
}

impl Transport for RelayTransport {
    fn describe(&self) -> String {
        format!("{} (relayed by {})", self.name, self.via.describe())
    }

    fn connect(&mut self) -> Result<(), TransportError> {
        self.via.connect()
    }

    fn exec(
        &mut self,
        script: &str,
        _shell: Shell,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        let line = self.line(script, ctl)?;
        self.via.exec(&line, self.via_shell, ctl, out)
    }

    fn exec_identified(
        &mut self,
        script: &str,
        _shell: Shell,
        ctl: &Control,
        id: Identity<'_>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        let line = self.line(script, ctl)?;
        self.via
            .exec_identified(&line, self.via_shell, ctl, id, out)
    }

    fn upload(
        &mut self,
        _src: &Path,
        _expected: &FileDigest,
        dest: &str,
        _shell: Shell,
        _pace: super::Pace<'_>,
    ) -> Result<(), TransportError> {
        Err(TransportError::Upload {
            target: self.describe(),
            dest: dest.to_string(),
            message:
                "a relay target cannot receive files: it is reached only through a command line"
                    .into(),
        })
    }

    fn read_file(
        &mut self,
        path: &str,
        _shell: Shell,
        _ctl: &Control,
        _sink: &mut dyn std::io::Write,
    ) -> Result<FileDigest, TransportError> {
        Err(TransportError::Download {
            target: self.describe(),
            path: path.to_string(),
            message: "a relay target cannot send files: it is reached only through a command line"
                .into(),
        })
    }

    fn run_script(
        &mut self,
        local: &Path,
        _shell: Shell,
        _ctl: &Control,
        _out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        Err(TransportError::InvalidScript {
            target: self.describe(),
            message: format!(
                "{} would first have to be copied to the relay target, which a relay cannot do",
                local.display()
            ),
        })
    }

    fn take_orphan(&mut self) -> Option<Orphan> {
        self.via.take_orphan()
    }

    /// What is lost is the command line on `via` (e.g. psexec): stopping it there is what can
    /// be done from here.
    fn stop_orphan(&mut self, orphan: &Orphan) -> Result<OrphanStop, TransportError> {
        self.via.stop_orphan(orphan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_one_word_for_the_via_shell() {
        let awkward = "echo \"a b\" 'c' $HOME `x` \\\nnext";
        assert_eq!(
            fill("sh -c {command}", Shell::Sh, awkward).as_deref(),
            Ok("sh -c 'echo \"a b\" '\\''c'\\'' $HOME `x` \\\nnext'")
        );
        assert_eq!(
            fill("& x {command}", Shell::PowerShell, "it's $x").as_deref(),
            Ok("& x 'it''s $x'")
        );
        assert_eq!(
            fill(
                r"psexec \\old -accepteula cmd /c {command}",
                Shell::Cmd,
                r"dir C:\ & ver"
            )
            .as_deref(),
            Ok(r#"psexec \\old -accepteula cmd /c "dir C:\ & ver""#)
        );
        // Backslashes before the closing quote are doubled, or the C runtime reads `\"`.
        assert_eq!(
            fill("cmd /c {command}", Shell::Cmd, r"dir C:\").as_deref(),
            Ok(r#"cmd /c "dir C:\\""#)
        );
    }

    #[test]
    fn cmd_relays_refuse_what_cmd_would_change() {
        for bad in ["echo %PATH%", "echo \"x\"", "a\nb", "a\rb"] {
            assert!(fill("x {command}", Shell::Cmd, bad).is_err(), "{bad:?}");
        }
        assert!(fill("no placeholder", Shell::Sh, "x").is_err());
        assert!(fill("{command} {command}", Shell::Sh, "x").is_err());
    }
}
