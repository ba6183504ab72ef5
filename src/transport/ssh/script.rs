//! Scripts too long for a command line: uploaded as a temporary file, run, and removed.

use std::io::Write;
use std::path::Path;

use ssh2::{OpenFlags, OpenType};

use super::exec::Tracking;
use super::upload::sftp_path;
use super::SshTransport;
use crate::transport::shell::{self, Payload};
use crate::transport::{
    random_token, CommandExit, Control, Shell, Stream, Transport, TransportError,
};

/// Where a `script:` step's file goes on a POSIX target, named by the attempt's token.
pub(super) fn sh_script_path(token: &str) -> String {
    format!("/tmp/runner-{token}.sh")
}

impl SshTransport {
    /// Write `content` to a new file on the target (exclusively: it must not exist).
    pub(super) fn write_new_file(
        &mut self,
        sftp_path: &str,
        content: &[u8],
    ) -> Result<(), TransportError> {
        let sftp = self.sftp()?;
        let _bounded = self.bounded()?;
        let mut file = match sftp.open_mode(
            Path::new(sftp_path),
            OpenFlags::WRITE | OpenFlags::EXCLUSIVE,
            0o600,
            OpenType::File,
        ) {
            Ok(f) => f,
            Err(e) => return Err(self.ssh_err(&format!("creating {sftp_path}"), e)),
        };
        let written = file.write_all(content);
        let closed = file.close();
        if let Err(e) = written {
            self.mark_broken_if_dead();
            // A partial script must not linger: it may hold rendered secrets.
            self.remove_file(sftp_path);
            return Err(TransportError::Upload {
                target: self.describe(),
                dest: sftp_path.to_string(),
                message: e.to_string(),
            });
        }
        closed.map_err(|e| self.ssh_err(&format!("writing {sftp_path}"), e))
    }

    pub(super) fn remove_file(&mut self, sftp_path: &str) {
        let attempt = |t: &mut Self| -> Result<(), TransportError> {
            t.connect()?;
            let sftp = t.sftp()?;
            sftp.unlink(Path::new(sftp_path))
                .map_err(|e| t.ssh_err(&format!("removing {sftp_path}"), e))
        };
        if let Err(e) = attempt(self) {
            tracing::warn!(target = %self.describe(), file = sftp_path, error = %e, "could not remove a temporary script; remove it by hand");
        }
    }

    /// The target's temporary directory in Windows form, e.g. `C:\Users\x\AppData\Local\Temp`.
    pub(super) fn windows_temp_dir(&mut self, shell: Shell) -> Result<String, TransportError> {
        if let Some(t) = &self.windows_temp {
            return Ok(t.clone());
        }
        let script = match shell {
            Shell::Cmd => "echo %TEMP%",
            _ => "[Console]::Out.Write([IO.Path]::GetTempPath())",
        };
        let (exit, stdout, stderr) = self.capture(script, shell)?;
        let dir = stdout.trim().trim_end_matches('\\').to_string();
        if exit != CommandExit::Code(0) || dir.is_empty() || dir.contains('%') {
            return Err(TransportError::ShellUnavailable {
                target: self.describe(),
                shell,
                message: format!(
                    "could not find the temporary directory ({exit:?}): {}",
                    stderr.trim()
                ),
            });
        }
        self.windows_temp = Some(dir.clone());
        Ok(dir)
    }

    /// Upload `content` as a temporary script, run it, and remove it whatever happens.
    pub(super) fn run_content(
        &mut self,
        content: &[u8],
        shell: Shell,
        ctl: &Control,
        token: Option<&str>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        self.connect()?;
        self.remove_leftover_scripts();
        let token = token.map_or_else(random_token, str::to_string);
        let (run_path, sftp_path) = match shell {
            Shell::Sh => {
                let p = sh_script_path(&token);
                (p.clone(), p)
            }
            Shell::Cmd | Shell::PowerShell => {
                let ext = if shell == Shell::Cmd { "cmd" } else { "ps1" };
                let dir = self.windows_temp_dir(shell)?;
                let p = format!("{dir}\\runner-{token}.{ext}");
                let s = sftp_path(&p, shell);
                (p, s)
            }
        };
        self.write_new_file(&sftp_path, content)?;
        let input = shell == Shell::Sh && ctl.has_input();
        let line =
            shell::tracked_command_line_with_input(shell, Payload::File(&run_path), &token, input);
        let tracking = Tracking {
            shell,
            token: &token,
        };
        let result = self.run_tracked(&line, tracking, ctl, out);
        if self.conn.as_ref().is_none_or(|c| c.broken) {
            // Removing it now would mean reconnecting before the engine has noted, durably,
            // the command that may still be running it; it goes after that command is stopped.
            self.leftover_scripts.push(sftp_path);
        } else {
            self.remove_file(&sftp_path);
        }
        result
    }

    pub(super) fn remove_leftover_scripts(&mut self) {
        for path in std::mem::take(&mut self.leftover_scripts) {
            self.remove_file(&path);
        }
    }
}
