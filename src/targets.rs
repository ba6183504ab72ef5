//! One transport per target, created on first use and reused by every step (a session per
//! target, not per command), with the target's secrets resolved before anything runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::digest::parse_cert_sha256;
use crate::playbook::{EnvValue, Playbook, Rendered, ShellKind, Target, TransportKind, WinrmAuth};
use crate::secret::{Redactor, Secret, SecretError, SecretRef};
use crate::target_defaults::{winrm_port, DEFAULT_KEEPALIVE, SSH_PORT};
use crate::transport::relay::RelayTransport;
use crate::transport::winrm::{Credentials, TlsTrust};
use crate::transport::{
    LocalTransport, Shell, SshAuth, SshConfig, SshTransport, Transport, TransportError,
    WinrmConfig, WinrmTransport,
};

use crate::target_defaults::CONNECT_TIMEOUT;

pub fn shell_of(kind: ShellKind) -> Shell {
    match kind {
        ShellKind::Sh => Shell::Sh,
        ShellKind::Cmd => Shell::Cmd,
        ShellKind::Powershell => Shell::PowerShell,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("target `{target}`: {source}")]
    Secret { target: String, source: SecretError },
    #[error("step `{step}`: {source}")]
    StepSecret { step: String, source: SecretError },
    #[error("target `{target}`: {what} is not supported by this build yet")]
    Unsupported { target: String, what: String },
}

/// Secrets of the targets, resolved once.
#[derive(Default)]
pub struct Secrets {
    by_target: BTreeMap<String, (Option<Secret>, Option<Secret>)>,
    /// Secrets of steps' `env` and `stdin`, by their reference as written.
    inputs: BTreeMap<String, Secret>,
}

impl Secrets {
    /// Resolves the password and passphrase of every named target, and teaches `redactor`
    /// their values so that no output can show them.
    pub fn resolve<'a>(
        pb: &Playbook,
        targets: impl IntoIterator<Item = &'a str>,
        redactor: &mut Redactor,
    ) -> Result<Secrets, TargetError> {
        Secrets::resolve_inner(pb, targets, redactor, true)
    }

    /// Like [`Secrets::resolve`], for connecting only (`runner ping`): the secrets of the steps'
    /// `env` and `stdin` are masked where they can be read, but one that cannot is no error.
    pub fn resolve_for_connecting<'a>(
        pb: &Playbook,
        targets: impl IntoIterator<Item = &'a str>,
        redactor: &mut Redactor,
    ) -> Result<Secrets, TargetError> {
        let mut s = Secrets::resolve_inner(pb, targets, redactor, false)?;
        s.add_readable_inputs(pb, redactor);
        Ok(s)
    }

    fn resolve_inner<'a>(
        pb: &Playbook,
        targets: impl IntoIterator<Item = &'a str>,
        redactor: &mut Redactor,
        with_steps: bool,
    ) -> Result<Secrets, TargetError> {
        let mut by_target = BTreeMap::new();
        let mut targets: Vec<&str> = targets.into_iter().collect();
        // The jump hosts a target is reached through log in with their own secrets.
        let mut i = 0;
        while i < targets.len() {
            let t = pb.targets.get(targets[i]);
            // And a relay's `via` with its own.
            let relay = t.and_then(|t| t.relay.as_ref()).map(|r| r.via.as_str());
            if let Some(via) = t.and_then(|t| t.jump.as_deref()).or(relay) {
                if !targets.contains(&via) {
                    targets.push(via);
                }
            }
            i += 1;
        }
        // The `env` and `stdin` secrets of every step that runs on one of these targets.
        let mut inputs = BTreeMap::new();
        for step in pb
            .steps
            .iter()
            .filter(|s| with_steps && s.targets.iter().any(|t| targets.contains(&t.as_str())))
        {
            for r in step_secret_refs(step) {
                if inputs.contains_key(&r.to_string()) {
                    continue;
                }
                let s = r
                    .resolve(&pb.dir)
                    .map_err(|source| TargetError::StepSecret {
                        step: step.id.clone(),
                        source,
                    })?;
                redactor.add(&s);
                inputs.insert(r.to_string(), s);
            }
        }
        for name in targets {
            let Some(t) = pb.targets.get(name) else {
                continue;
            };
            let get =
                |r: &Option<crate::secret::SecretRef>| -> Result<Option<Secret>, TargetError> {
                    r.as_ref()
                        .map(|r| {
                            r.resolve(&pb.dir).map_err(|source| TargetError::Secret {
                                target: name.to_string(),
                                source,
                            })
                        })
                        .transpose()
                };
            let password = get(&t.password)?;
            let passphrase = get(&t.passphrase)?;
            for s in password.iter().chain(passphrase.iter()) {
                redactor.add(s);
            }
            by_target.insert(name.to_string(), (password, passphrase));
        }
        // A `notify:` mail server's password is a secret of the run too: output that shows it
        // is masked. (A missing one is reported before the run, by the notifier.)
        for r in pb
            .notify
            .iter()
            .filter_map(crate::playbook::notify::Sink::smtp_password)
        {
            if let Ok(s) = r.resolve(&pb.dir) {
                redactor.add(&s);
            }
        }
        Ok(Secrets { by_target, inputs })
    }

    /// Like [`Secrets::resolve`] for the `required` targets (those with work to do: a missing
    /// secret is an error), and for every other target of the playbook as far as its secrets
    /// can be read: a command may repeat any secret the playbook references, so every one that
    /// can be known is masked, even of targets with no work left.
    pub fn resolve_all<'a>(
        pb: &Playbook,
        required: impl IntoIterator<Item = &'a str>,
        redactor: &mut Redactor,
    ) -> Result<Secrets, TargetError> {
        let mut all = Secrets::resolve(pb, required, redactor)?;
        for (name, t) in &pb.targets {
            if all.by_target.contains_key(name) {
                continue;
            }
            let get = |r: &Option<crate::secret::SecretRef>| {
                r.as_ref().and_then(|r| r.resolve(&pb.dir).ok())
            };
            let (password, passphrase) = (get(&t.password), get(&t.passphrase));
            for s in password.iter().chain(passphrase.iter()) {
                redactor.add(s);
            }
            all.by_target.insert(name.clone(), (password, passphrase));
        }
        all.add_readable_inputs(pb, redactor);
        Ok(all)
    }

    /// Reads every step's `env` and `stdin` secret that can be read, for masking.
    fn add_readable_inputs(&mut self, pb: &Playbook, redactor: &mut Redactor) {
        for step in &pb.steps {
            for r in step_secret_refs(step) {
                if self.inputs.contains_key(&r.to_string()) {
                    continue;
                }
                if let Ok(s) = r.resolve(&pb.dir) {
                    redactor.add(&s);
                    self.inputs.insert(r.to_string(), s);
                }
            }
        }
    }

    /// A redactor that knows every secret of the playbook that can be read now (for commands
    /// that only show what was recorded: status, report).
    pub fn redactor_for(pb: &Playbook) -> Redactor {
        let mut r = Redactor::new();
        let _ = Secrets::resolve_all(pb, std::iter::empty(), &mut r);
        r
    }

    /// What the command of `r` gets besides its text: its `env` (plain values and resolved
    /// secrets) and `stdin`. A secret that could not be read is left out (the run resolved
    /// every one a step with work needs before it started).
    pub fn inputs_of(&self, r: &Rendered) -> (Vec<(String, Secret)>, Option<Secret>) {
        let env = r
            .env
            .iter()
            .filter_map(|v| match &v.value {
                EnvValue::Plain(text) => Some((v.name.clone(), Secret::new(text.clone()))),
                EnvValue::Secret(r) => self
                    .inputs
                    .get(&r.to_string())
                    .map(|s| (v.name.clone(), s.clone())),
            })
            .collect();
        let stdin = r
            .stdin
            .as_ref()
            .and_then(|r| self.inputs.get(&r.to_string()).cloned());
        (env, stdin)
    }

    fn of(&self, target: &str) -> (Option<Secret>, Option<Secret>) {
        self.by_target.get(target).cloned().unwrap_or((None, None))
    }
}

/// The secret references of a step's `env` and `stdin` (the same for every target).
fn step_secret_refs(step: &crate::playbook::Step) -> Vec<&SecretRef> {
    let mut out = Vec::new();
    for r in &step.rendered {
        for v in &r.env {
            if let EnvValue::Secret(s) = &v.value {
                out.push(s);
            }
        }
        out.extend(r.stdin.iter());
    }
    out
}

/// Builds the transport for a target (without connecting).
pub fn make_transport(
    pb: &Playbook,
    t: &Target,
    secrets: &Secrets,
) -> Result<Box<dyn Transport>, TargetError> {
    let (password, _) = secrets.of(&t.name);
    match t.transport {
        TransportKind::Local => Ok(Box::new(LocalTransport::new(pb.dir.clone()))),
        TransportKind::Relay => make_relay(pb, t, secrets),
        TransportKind::Ssh => {
            // The jump hosts, the one reached directly first (validate refused cycles; the
            // bound keeps a bad model from looping).
            let mut hops = Vec::new();
            let mut via = t.jump.as_deref();
            while let Some(name) = via {
                let Some(hop) = pb.targets.get(name) else {
                    break;
                };
                if hops.len() >= pb.targets.len() {
                    return Err(TargetError::Unsupported {
                        target: t.name.clone(),
                        what: "a circle of jump hosts".into(),
                    });
                }
                hops.insert(0, ssh_config(hop, secrets));
                via = hop.jump.as_deref();
            }
            if t.jump.is_none() {
                // From `~/.ssh/config`'s ProxyJump: checked against the target's known_hosts.
                let own = ssh_config(t, secrets);
                for h in &t.proxy_hops {
                    hops.push(SshConfig {
                        name: format!("{}@{}", h.user, h.host),
                        host: h.host.clone(),
                        port: h.port,
                        user: h.user.clone(),
                        auth: match &h.key {
                            Some(k) => SshAuth::Key {
                                path: k.clone(),
                                passphrase: None,
                            },
                            None => SshAuth::Agent,
                        },
                        ..own.clone()
                    });
                }
            }
            Ok(Box::new(SshTransport::through(
                ssh_config(t, secrets),
                hops,
            )))
        }
        TransportKind::Winrm => {
            let w = make_winrm(t, password)?;
            #[cfg(unix)]
            if t.jump.is_some() {
                let mut hops = Vec::new();
                let mut via = t.jump.as_deref();
                while let Some(name) = via {
                    let Some(hop) = pb.targets.get(name) else {
                        break;
                    };
                    if hops.len() >= pb.targets.len() {
                        return Err(TargetError::Unsupported {
                            target: t.name.clone(),
                            what: "a circle of jump hosts".into(),
                        });
                    }
                    hops.insert(0, ssh_config(hop, secrets));
                    via = hop.jump.as_deref();
                }
                let cfg = w.config().clone();
                return Ok(Box::new(WinrmTransport::through(cfg, hops)));
            }
            Ok(Box::new(w))
        }
    }
}

/// How to log into the SSH target `t`.
/// A relay target: its `via` target's transport (made the same way, so a relay may be reached
/// through another relay) running the `run` line.
fn make_relay(
    pb: &Playbook,
    t: &Target,
    secrets: &Secrets,
) -> Result<Box<dyn Transport>, TargetError> {
    let unsupported = |what: &str| TargetError::Unsupported {
        target: t.name.clone(),
        what: what.to_string(),
    };
    let Some(relay) = &t.relay else {
        return Err(unsupported("a relay without `via` and `run`"));
    };
    // validate refused circles; this keeps a bad model from recursing for ever.
    let chain = crate::playbook::relay::chain(&pb.targets, &t.name);
    if chain.last().is_some_and(|end| end.relay.is_some()) {
        return Err(unsupported(
            "a chain of relays that ends in no reachable target",
        ));
    }
    let Some(via) = pb.targets.get(&relay.via) else {
        return Err(unsupported("a relay whose `via` is not a target"));
    };
    let inner = make_transport(pb, via, secrets)?;
    Ok(Box::new(RelayTransport::new(
        &t.name,
        inner,
        shell_of(via.shell),
        &relay.run,
    )))
}

fn ssh_config(t: &Target, secrets: &Secrets) -> SshConfig {
    let (password, passphrase) = secrets.of(&t.name);
    let auth = match (&t.key, password) {
        (Some(key), _) => SshAuth::Key {
            path: key.clone(),
            passphrase,
        },
        (None, Some(pw)) => SshAuth::Password(pw),
        (None, None) => SshAuth::Agent,
    };
    SshConfig {
        name: t.name.clone(),
        host: t.host.clone().unwrap_or_default(),
        port: t.port.unwrap_or(SSH_PORT),
        user: t.user.clone().unwrap_or_default(),
        auth,
        known_hosts: t.known_hosts.clone().unwrap_or_else(default_known_hosts),
        connect_timeout: CONNECT_TIMEOUT,
        keepalive: t.keepalive.unwrap_or(DEFAULT_KEEPALIVE),
    }
}

/// How long the server may hold a WinRM Receive open when a command prints nothing.
pub const WINRM_OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// A WinRM transport for `t`, or why this build cannot reach it.
fn make_winrm(t: &Target, password: Option<Secret>) -> Result<WinrmTransport, TargetError> {
    let unsupported = |what: &str| TargetError::Unsupported {
        target: t.name.clone(),
        what: what.to_string(),
    };
    let basic = t.auth == Some(WinrmAuth::Basic);
    if basic && !t.https && !t.allow_unencrypted {
        // validate refuses this already; kept so no other caller can send Basic in clear.
        return Err(unsupported("Basic authentication over plain HTTP"));
    }
    let Some(password) = password else {
        return Err(unsupported("a WinRM target without a password"));
    };
    let tls = if !t.https {
        None
    } else if t.insecure {
        Some(TlsTrust::Insecure)
    } else if let Some(fp) = &t.cert_sha256 {
        match parse_cert_sha256(fp) {
            Some(pin) => Some(TlsTrust::Pinned(pin)),
            None => return Err(unsupported("a `cert_sha256` that is not 64 hex digits")),
        }
    } else if let Some(ca) = &t.ca_file {
        Some(TlsTrust::CaFile(ca.clone()))
    } else {
        Some(TlsTrust::System)
    };
    Ok(WinrmTransport::new(WinrmConfig {
        name: t.name.clone(),
        host: t.host.clone().unwrap_or_default(),
        port: t.port.unwrap_or(winrm_port(t.https)),
        tls,
        credentials: {
            let user = t.user.clone().unwrap_or_default();
            let password = crate::transport::Secret::new(password.expose());
            if basic {
                Credentials::Basic { user, password }
            } else {
                Credentials::Ntlm { user, password }
            }
        },
        connect_timeout: CONNECT_TIMEOUT,
        operation_timeout: WINRM_OPERATION_TIMEOUT,
    }))
}

/// `~/.ssh/known_hosts` of the user running runner.
pub fn default_known_hosts() -> PathBuf {
    crate::paths::expand_home(std::path::Path::new("~/.ssh/known_hosts"))
}

/// The transports of a run, one per target, each used by one pair at a time.
pub struct Pool {
    slots: BTreeMap<String, Mutex<Option<Box<dyn Transport>>>>,
}

impl Pool {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Pool {
        Pool {
            slots: names
                .into_iter()
                .map(|n| (n.to_string(), Mutex::new(None)))
                .collect(),
        }
    }

    /// Forgets the target's transport (after a reboot the old session is dead even if it
    /// does not know it yet); the next use connects afresh.
    pub fn reset(&self, target: &str) {
        if let Some(slot) = self.slots.get(target) {
            if let Ok(mut g) = slot.lock() {
                *g = None;
            }
        }
    }

    /// Runs `f` with the target's transport, creating it on first use and connecting (or
    /// reconnecting) it first.
    pub fn with<R>(
        &self,
        pb: &Playbook,
        secrets: &Secrets,
        target: &str,
        f: impl FnOnce(&mut dyn Transport) -> R,
    ) -> Result<R, PoolError> {
        let slot = self
            .slots
            .get(target)
            .ok_or_else(|| PoolError::UnknownTarget(target.to_string()))?;
        let mut guard = slot
            .lock()
            .map_err(|_| PoolError::Poisoned(target.to_string()))?;
        if guard.is_none() {
            let t = pb
                .targets
                .get(target)
                .ok_or_else(|| PoolError::UnknownTarget(target.to_string()))?;
            *guard = Some(make_transport(pb, t, secrets)?);
        }
        let transport = guard
            .as_mut()
            .ok_or_else(|| PoolError::UnknownTarget(target.to_string()))?;
        transport.connect().map_err(|e| match e {
            // Their hint names the real trust command, which needs the playbook's name.
            TransportError::HostKeyUnknown { .. } | TransportError::HostKeyChanged { .. } => {
                PoolError::HostKey(crate::transport::known_hosts::with_trust_command(
                    &e.to_string(),
                    &pb.path,
                    target,
                ))
            }
            e => PoolError::Transport(e),
        })?;
        Ok(f(transport.as_mut()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("unknown target `{0}`")]
    UnknownTarget(String),
    #[error("internal error: the connection to `{0}` was poisoned by a crashed thread")]
    Poisoned(String),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A host key that is unknown or changed, with the real `runner trust` command.
    #[error("{0}")]
    HostKey(String),
}
