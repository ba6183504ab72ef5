//! `runner ping` (can every target be reached and run a command?) and `runner trust`
//! (record an SSH host key after a person checked its fingerprint).

use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

use crate::exit::Exit;
use crate::outln;
use crate::playbook::{Playbook, TransportKind};
use crate::secret::Redactor;
use crate::targets::{default_known_hosts, make_transport, shell_of, Secrets};
use crate::transport::known_hosts;
use crate::transport::{CommandExit, Control};

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error(transparent)]
    Target(#[from] crate::targets::TargetError),
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

/// One target's diagnosis, stage by stage: the first failing stage names the cause.
struct Diagnosis {
    name: String,
    address: String,
    /// What succeeded, in order ("port open", "connected", "whoami: acme\\administrator").
    passed: Vec<String>,
    failure: Option<String>,
    millis: u128,
}

/// Whether the TCP port answers at all: tells "nothing listens" (or a firewall) apart from
/// TLS, host key and authentication problems.
fn port_open(host: &str, port: u16) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last = String::from("no address");
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(5)) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!(
        "port {port} on {host} does not answer ({last}): is the service running and the firewall open?"
    ))
}

fn diagnose(pb: &Playbook, t: &crate::playbook::Target, secrets: &Secrets) -> Diagnosis {
    let started = Instant::now();
    let mut d = Diagnosis {
        name: t.name.clone(),
        address: t.address(),
        passed: Vec::new(),
        failure: None,
        millis: 0,
    };
    let r = (|| -> Result<(), String> {
        if let (Some(host), Some(port)) = (&t.host, t.port) {
            port_open(host, port)?;
            d.passed.push("port open".into());
        }
        let mut tr = make_transport(pb, t, secrets).map_err(|e| e.to_string())?;
        tr.connect().map_err(|e| {
            format!(
                "connect: {}",
                known_hosts::with_trust_command(&e.to_string(), &pb.path, &t.name)
            )
        })?;
        d.passed.push(match t.transport {
            TransportKind::Ssh => "host key and login accepted".into(),
            TransportKind::Winrm if t.https => "certificate and authentication accepted".into(),
            TransportKind::Winrm => "authentication accepted".into(),
            TransportKind::Local => "local".into(),
            TransportKind::Relay => format!(
                "reached `{}`, the relay's `via`",
                t.relay.as_ref().map_or("?", |r| r.via.as_str())
            ),
        });
        let ctl = Control::new(Some(std::time::Duration::from_secs(30)));
        let (exit, out, _) =
            crate::transport::capture(|sink| tr.exec("whoami", shell_of(t.shell), &ctl, sink))
                .map_err(|e| format!("whoami: {e}"))?;
        match exit {
            CommandExit::Code(0) => {
                let who = out.trim().to_string();
                d.passed.push(format!("whoami: {who}"));
                Ok(())
            }
            CommandExit::Code(c) => Err(format!("whoami exited with {c}")),
            other => Err(format!("whoami did not finish: {other:?}")),
        }
    })();
    d.failure = r.err();
    d.millis = started.elapsed().as_millis();
    d
}

/// Connects to every target stage by stage (port, TLS or host key, authentication, a
/// `whoami` that runs), prints a table; exit 1 if any fails.
pub fn ping(pb: &Playbook) -> Result<Exit, PingError> {
    let mut redactor = Redactor::new();
    let secrets =
        Secrets::resolve_for_connecting(pb, pb.targets.keys().map(String::as_str), &mut redactor)?;
    let results: Vec<Diagnosis> = std::thread::scope(|scope| {
        let handles: Vec<_> = pb
            .targets
            .values()
            .map(|t| {
                let secrets = &secrets;
                scope.spawn(move || diagnose(pb, t, secrets))
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let width = results
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut failed = 0;
    outln!("{:<width$}  {:<8}  DETAIL", "TARGET", "RESULT");
    for d in &results {
        let passed = if d.passed.is_empty() {
            String::new()
        } else {
            format!("{}; ", d.passed.join("; "))
        };
        match &d.failure {
            None => outln!(
                "{:<width$}  {:<8}  {} : {passed}{} ms",
                d.name,
                "ok",
                d.address,
                d.millis
            ),
            Some(e) => {
                failed += 1;
                let e = redactor.redact(e);
                outln!(
                    "{:<width$}  {:<8}  {} : {passed}FAILED at {}",
                    d.name,
                    "FAILED",
                    d.address,
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

/// Whether a typed answer confirms: `yes` or `y`, in any case.
fn confirmed(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "yes" | "y")
}

/// Shows each SSH target's host key fingerprint and, once confirmed, records it in the
/// target's known_hosts file. A key that differs from one already recorded is never replaced
/// here: that is for a person to investigate and edit by hand.
///
/// The fingerprint is always shown. Confirmation is `yes` (or `y`) typed on a terminal, or
/// `--yes` given after checking the fingerprint another way; without a terminal nothing else
/// is read. Exit 1 when any target was left untrusted.
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
    let mut untrusted: Vec<&str> = Vec::new();
    for t in targets {
        let host = t.host.clone().unwrap_or_default();
        let port = t.port.unwrap_or(crate::target_defaults::SSH_PORT);
        let file = t.known_hosts.clone().unwrap_or_else(default_known_hosts);
        if let Some(j) = &t.jump {
            // Scanned from here, the address could be another machine than the one the jump
            // host reaches: record that key by hand.
            outln!(
                "{}: reached through jump host {j}, so its key is not scanned from this machine; on {j}, run `ssh-keyscan -p {port} {host}`, check the fingerprint with the server's administrator and add the line to {}",
                t.name,
                file.display()
            );
            continue;
        }
        let key = known_hosts::scan_host_key(&host, port, crate::target_defaults::CONNECT_TIMEOUT)?;
        outln!(
            "{}: {host}:{port} offers a {} key with fingerprint {}",
            t.name,
            key.key_type(),
            key.fingerprint_sha256()
        );
        if !yes {
            if !interactive {
                println!("{}: not trusted (no terminal to confirm on)", t.name);
                untrusted.push(&t.name);
                continue;
            }
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "Does this match what the server's administrator reads on the server (`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub`)? Type `yes` to trust it, anything else to leave it untrusted: ");
            let _ = err.flush();
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            let answer = line.trim();
            if !confirmed(answer) {
                outln!(
                    "{}: not trusted (the answer was `{answer}`, not `yes`)",
                    t.name
                );
                untrusted.push(&t.name);
                continue;
            }
        }
        known_hosts::trust(&file, &host, port, &key)?;
        outln!("{}: recorded in {}", t.name, file.display());
    }
    if untrusted.is_empty() {
        return Ok(Exit::Success);
    }
    let how = if interactive {
        "run it again and type `yes` once the fingerprint is checked"
    } else {
        "there is no terminal to confirm on: check the fingerprint with the server's administrator, then add --yes"
    };
    eprintln!(
        "not trusted: {}; {how} (`runner trust {} {}--yes`)",
        untrusted.join(", "),
        pb.path.display(),
        only.map(|o| format!("{o} ")).unwrap_or_default()
    );
    Ok(Exit::StepFailed)
}

#[cfg(test)]
mod tests {
    use super::confirmed;

    #[test]
    fn yes_and_y_confirm_anything_else_does_not() {
        for a in ["yes", "y", "Y", "YES", " yes\n"] {
            assert!(confirmed(a), "{a:?}");
        }
        for a in ["", "no", "n", "ok", "yess", "sure"] {
            assert!(!confirmed(a), "{a:?}");
        }
    }
}
