//! `runner ping` (can every target be reached and run a command?) and `runner trust`
//! (record an SSH host key after a person checked its fingerprint).

use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

use crate::engine::targets::{default_known_hosts, make_transport, shell_of, Secrets};
use crate::exit::Exit;
use crate::playbook::{Playbook, ShellKind, TransportKind};
use crate::secret::Redactor;
use crate::transport::known_hosts;
use crate::transport::{Control, Exit as CmdExit};

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error(transparent)]
    Target(#[from] crate::engine::targets::TargetError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
}

impl PingError {
    pub fn exit(&self) -> Exit {
        match self {
            PingError::Target(_) | PingError::Usage(_) => Exit::InvalidInput,
            PingError::Transport(_) => Exit::StepFailed,
        }
    }
}

fn noop(shell: ShellKind) -> &'static str {
    match shell {
        ShellKind::Sh => "true",
        ShellKind::Cmd => "exit /b 0",
        ShellKind::Powershell => "exit 0",
    }
}

/// Connects to every target and runs a no-op; prints a table; exit 1 if any fails.
pub fn ping(pb: &Playbook) -> Result<Exit, PingError> {
    let mut redactor = Redactor::new();
    let secrets = Secrets::resolve(pb, pb.targets.keys().map(String::as_str), &mut redactor)?;
    let results: Vec<(String, String, Result<u128, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = pb
            .targets
            .values()
            .map(|t| {
                let secrets = &secrets;
                scope.spawn(move || {
                    let started = Instant::now();
                    let r = (|| -> Result<(), String> {
                        let mut tr = make_transport(pb, t, secrets).map_err(|e| e.to_string())?;
                        tr.connect().map_err(|e| e.to_string())?;
                        let ctl = Control::new(Some(std::time::Duration::from_secs(30)));
                        match tr.exec(noop(t.shell), shell_of(t.shell), &ctl, &mut |_, _| {}) {
                            Ok(CmdExit::Code(0)) => Ok(()),
                            Ok(CmdExit::Code(c)) => Err(format!("the no-op exited with {c}")),
                            Ok(other) => Err(format!("the no-op did not finish: {other:?}")),
                            Err(e) => Err(e.to_string()),
                        }
                    })();
                    (
                        t.name.clone(),
                        t.address(),
                        r.map(|()| started.elapsed().as_millis()),
                    )
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let width = results.iter().map(|r| r.0.len()).max().unwrap_or(6).max(6);
    let mut failed = 0;
    println!("{:<width$}  {:<8}  DETAIL", "TARGET", "RESULT");
    for (name, address, r) in &results {
        match r {
            Ok(ms) => println!("{name:<width$}  {:<8}  {address} ({ms} ms)", "ok"),
            Err(e) => {
                failed += 1;
                let e = redactor.redact(e);
                println!(
                    "{name:<width$}  {:<8}  {address}: {}",
                    "FAILED",
                    e.replace('\n', "\n    ")
                );
            }
        }
    }
    Ok(if failed == 0 {
        Exit::Success
    } else {
        Exit::StepFailed
    })
}

/// Shows each SSH target's host key fingerprint and, once confirmed, records it in the
/// target's known_hosts file. A key that differs from one already recorded is never replaced
/// here: that is for a person to investigate and edit by hand.
pub fn trust(pb: &Playbook, only: Option<&str>, yes: bool) -> Result<Exit, PingError> {
    let targets: Vec<_> = pb
        .targets
        .values()
        .filter(|t| t.transport == TransportKind::Ssh)
        .filter(|t| only.is_none_or(|o| o == t.name))
        .collect();
    if let Some(o) = only {
        if targets.is_empty() {
            return Err(PingError::Usage(format!(
                "`{o}` is not an ssh target of {}",
                pb.path.display()
            )));
        }
    }
    let interactive = std::io::stdin().is_terminal();
    if !yes && !interactive {
        return Err(PingError::Usage(
            "trust needs confirmation: run it on a terminal, or add --yes after checking the fingerprints another way".into(),
        ));
    }
    for t in targets {
        let host = t.host.clone().unwrap_or_default();
        let port = t.port.unwrap_or(22);
        let file = t.known_hosts.clone().unwrap_or_else(default_known_hosts);
        let key = known_hosts::scan_host_key(&host, port, crate::engine::targets::CONNECT_TIMEOUT)?;
        println!(
            "{}: {host}:{port} offers a {} key with fingerprint {}",
            t.name,
            key.key_type(),
            key.fingerprint_sha256()
        );
        if !yes {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "Does this match what the server's administrator reads on the server (`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub`)? Type `yes` to trust it: ");
            let _ = err.flush();
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            if line.trim() != "yes" {
                println!("{}: not trusted", t.name);
                continue;
            }
        }
        known_hosts::trust(&file, &host, port, &key)?;
        println!("{}: recorded in {}", t.name, file.display());
    }
    Ok(Exit::Success)
}
