//! Validation of targets: transports, jump hosts, ssh_config, keepalive, WinRM TLS, groups.

use super::*;

impl Validator<'_> {
    /// `key` of target `name` (`jump`, `via`) names `other`, which is no target: say which
    /// targets there are, or the one meant.
    pub(super) fn no_such_target(
        &mut self,
        at: &[Seg],
        key: &str,
        other: &str,
        name: &str,
        raw: &RawPlaybook,
    ) {
        let help = suggestion_or_choices(
            other,
            raw.targets
                .keys()
                .filter(|k| *k != name)
                .map(String::as_str),
        );
        self.err(
            at,
            format!("`{key}` names `{other}`, which is not a target"),
            Some(help),
        );
    }

    pub(super) fn secret(&mut self, path: &[Seg], raw: &Option<RawSecretRef>) -> Option<SecretRef> {
        let r = raw.as_ref()?;
        match (&r.env, &r.file) {
            (Some(env), None) if !env.trim().is_empty() => Some(SecretRef::Env(env.clone())),
            (None, Some(file)) if !file.trim().is_empty() => {
                Some(SecretRef::File(PathBuf::from(file)))
            }
            _ => {
                self.err(
                    path,
                    "a secret reference needs exactly one non-empty `env` or `file`",
                    Some("for example `{ env: OLD_SBS_PASSWORD }`".into()),
                );
                None
            }
        }
    }

    pub(super) fn targets(&mut self, raw: &RawPlaybook) -> BTreeMap<String, Target> {
        let mut out = BTreeMap::new();
        for (name, t) in &raw.targets {
            if let Some(target) = self.target(name, t) {
                out.insert(name.clone(), target);
            }
        }
        self.jumps(raw);
        self.relays(raw, &mut out);
        out
    }

    /// Each `jump` names another `ssh` target, from an `ssh` target, and no chain of jumps
    /// comes back to where it started.
    pub(super) fn jumps(&mut self, raw: &RawPlaybook) {
        for (name, t) in &raw.targets {
            let Some(via) = &t.jump else {
                continue;
            };
            let at = vec![key("targets"), key(name), key("jump")];
            if matches!(t.transport, TransportKind::Local | TransportKind::Relay) {
                self.err(
                    &at,
                    format!(
                        "`jump` applies to `ssh` and `winrm` targets, and `{name}` is {}",
                        kind_name(t.transport)
                    ),
                    Some("remove `jump`".into()),
                );
                continue;
            }
            match raw.targets.get(via) {
                None => {
                    self.no_such_target(&at, "jump", via, name, raw);
                    continue;
                }
                Some(v) if v.transport != TransportKind::Ssh => {
                    self.err(
                        &at,
                        format!("`jump` names `{via}`, which is not an `ssh` target"),
                        Some("a jump host is reached over SSH: name an `ssh` target".into()),
                    );
                    continue;
                }
                Some(_) => {}
            }
            // Follow the chain; coming back to `name` is a cycle.
            let mut chain = vec![name.clone()];
            let mut next = Some(via.clone());
            while let Some(n) = next {
                if chain.contains(&n) {
                    if n == *name {
                        chain.push(n);
                        self.err(
                            &at,
                            format!("the jump hosts of `{name}` go round in a circle: {}", chain.join(" -> ")),
                            Some("one target in the chain must be reachable directly (without `jump`)".into()),
                        );
                    }
                    break;
                }
                next = raw.targets.get(&n).and_then(|t| t.jump.clone());
                chain.push(n);
            }
        }
    }

    /// `ssh_config: true`: the target with what `~/.ssh/config` says for its `host` filled in
    /// where it sets nothing, what was taken, and the `ProxyJump` hosts (unless it has `jump`).
    pub(super) fn with_ssh_config(
        &mut self,
        name: &str,
        t: &RawTarget,
    ) -> (RawTarget, Vec<String>, Vec<super::super::ProxyHop>) {
        let at = vec![key("targets"), key(name), key("ssh_config")];
        let mut eff = t.clone();
        if t.transport != TransportKind::Ssh {
            self.err(
                &at,
                "`ssh_config` applies to `ssh` targets",
                Some("remove it".into()),
            );
            return (eff, Vec::new(), Vec::new());
        }
        let Some(alias) = t.host.clone() else {
            return (eff, Vec::new(), Vec::new());
        };
        let home = expand_home(Path::new("~"));
        let file = home.join(".ssh").join("config");
        let Some((cfg, found)) = self.read_ssh_config(&at, &file, &alias, &home) else {
            return (eff, Vec::new(), Vec::new());
        };
        let mut taken = take_from_ssh_config(t, &found, &mut eff);
        let hops = match found.proxy_jump.as_deref().filter(|p| *p != "none") {
            Some(pj) if t.jump.is_some() => {
                taken.push(format!(
                    "ProxyJump {pj} ignored: the target's `jump` is used"
                ));
                Vec::new()
            }
            Some(pj) => match self.proxy_hops(&at, &file, pj, &cfg, &home, &eff) {
                Some(hops) => {
                    taken.push(format!("ProxyJump {pj}"));
                    hops
                }
                None => return (eff, taken, Vec::new()),
            },
            None => Vec::new(),
        };
        for (line, text) in &cfg.ignored {
            taken.push(format!("not read: line {line} `{text}`"));
        }
        (eff, taken, hops)
    }

    /// `~/.ssh/config` and what it says for `alias`; None after an error.
    fn read_ssh_config(
        &mut self,
        at: &[Seg],
        file: &Path,
        alias: &str,
        home: &Path,
    ) -> Option<(
        crate::ssh_config::SshConfigFile,
        crate::ssh_config::HostSettings,
    )> {
        let read = crate::ssh_config::SshConfigFile::read(file).and_then(|c| {
            let s = c.lookup(alias, home)?;
            Ok((c, s))
        });
        match read {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(at, format!("`ssh_config: true`, but {e}"), Some("create the file, or set the target's `host`, `port`, `user` and `key` here and remove `ssh_config`".into()));
                None
            }
        }
    }

    /// The jump hosts of a `ProxyJump` line, each as the file describes it; None after an error.
    fn proxy_hops(
        &mut self,
        at: &[Seg],
        file: &Path,
        pj: &str,
        cfg: &crate::ssh_config::SshConfigFile,
        home: &Path,
        eff: &RawTarget,
    ) -> Option<Vec<super::super::ProxyHop>> {
        let mut hops = Vec::new();
        for spec in pj.split(',') {
            let Some((user, host, port)) = crate::ssh_config::parse_jump(spec) else {
                self.err(at, format!("`ProxyJump {pj}` in {} is not a list of `[user@]host[:port]`", file.display()), Some("fix the line in that file, or give the jump host as a target and use `jump`".into()));
                return None;
            };
            let hop = match cfg.lookup(&host, home) {
                Ok(h) => h,
                Err(e) => {
                    self.err(at, e.to_string(), None);
                    return None;
                }
            };
            hops.push(super::super::ProxyHop {
                host: hop.host_name.clone().unwrap_or(host),
                port: port.or(hop.port).unwrap_or(22),
                user: user
                    .or(hop.user.clone())
                    .or(eff.user.clone())
                    .unwrap_or_default(),
                key: hop.identity_file.clone().or_else(|| {
                    eff.key
                        .as_ref()
                        .map(|k| self.dir.join(expand_home(Path::new(k))))
                }),
            });
        }
        Some(hops)
    }

    /// One target checked and made into a [`Target`] (with what `~/.ssh/config` says when it
    /// asks for that); None after an error.
    pub(super) fn target(&mut self, name: &str, t: &RawTarget) -> Option<Target> {
        let p = |k: &str| vec![key("targets"), key(name), key(k)];
        let before = self.diags.len();
        let (effective, from_ssh_config, proxy_hops) = if t.ssh_config {
            self.with_ssh_config(name, t)
        } else {
            (t.clone(), Vec::new(), Vec::new())
        };
        let t = &effective;
        self.target_name(name);
        self.target_login(name, t);
        self.other_transports_keys(name, t);
        if t.transport == TransportKind::Winrm {
            self.winrm_login(name, t);
        }
        self.target_values(name, t);
        let keepalive = match t.transport {
            TransportKind::Ssh => self.keepalive(&p("keepalive"), t.keepalive.as_deref()),
            _ => None,
        };
        let password = self.secret(&p("password"), &t.password);
        let passphrase = self.secret(&p("passphrase"), &t.passphrase);
        let relay = self.relay_of(name, t);
        if self.diags.len() != before {
            return None;
        }
        Some(Target {
            keepalive,
            password,
            passphrase,
            relay,
            proxy_hops,
            from_ssh_config,
            ..self.resolved_target(name, t)
        })
    }

    /// A target name is lowercase letters, digits, `-` and `_`, and not the operator's.
    fn target_name(&mut self, name: &str) {
        let base = vec![key("targets"), key(name)];
        if !is_name(name) || name == OPERATOR {
            self.err(&base, format!("`{name}` is not a valid target name"), Some(format!("use lowercase letters, digits, `-` and `_` (and not `{OPERATOR}`, which names the person confirming manual steps)")));
        }
    }

    /// A remote target has a `host` and a `user`; a local or relay one has none of the login's
    /// keys.
    fn target_login(&mut self, name: &str, t: &RawTarget) {
        let p = |k: &str| vec![key("targets"), key(name), key(k)];
        let base = vec![key("targets"), key(name)];
        let kind = t.transport;
        let remote = matches!(kind, TransportKind::Ssh | TransportKind::Winrm);
        if remote && t.host.as_deref().is_none_or(|h| h.trim().is_empty()) {
            self.err(
                &base,
                format!("target `{name}` uses {} but has no `host`", kind_name(kind)),
                Some("add `host: NAME-OR-ADDRESS`".into()),
            );
        }
        if remote && t.user.as_deref().is_none_or(|u| u.trim().is_empty()) {
            self.err(
                &base,
                format!("target `{name}` has no `user`"),
                Some("add the login user, e.g. `user: administrator`".into()),
            );
        }
        if !remote {
            for (k, present) in [
                ("host", t.host.is_some()),
                ("port", t.port.is_some()),
                ("user", t.user.is_some()),
                ("password", t.password.is_some()),
            ] {
                if present {
                    self.err(
                        &p(k),
                        format!("a {} target has no `{k}`", kind_name(kind)),
                        Some("remove it, or use `transport: ssh`".into()),
                    );
                }
            }
        }
    }

    /// Keys that belong to another transport (`key` to ssh, `https` to winrm...).
    fn other_transports_keys(&mut self, name: &str, t: &RawTarget) {
        let p = |k: &str| vec![key("targets"), key(name), key(k)];
        let kind = t.transport;
        if kind != TransportKind::Ssh {
            for (k, present) in [
                ("key", t.key.is_some()),
                ("passphrase", t.passphrase.is_some()),
                ("known_hosts", t.known_hosts.is_some()),
                ("keepalive", t.keepalive.is_some()),
            ] {
                if present {
                    self.err(
                        &p(k),
                        format!("`{k}` applies only to ssh targets"),
                        Some(format!("remove it, or use `transport: ssh` for `{name}`")),
                    );
                }
            }
        }
        if kind != TransportKind::Winrm {
            for (k, present) in [
                ("https", t.https),
                ("auth", t.auth.is_some()),
                ("ca_file", t.ca_file.is_some()),
                ("cert_sha256", t.cert_sha256.is_some()),
                ("insecure", t.insecure),
                ("allow_unencrypted", t.allow_unencrypted),
            ] {
                if present {
                    self.err(
                        &p(k),
                        format!("`{k}` applies only to winrm targets"),
                        Some(format!("remove it, or use `transport: winrm` for `{name}`")),
                    );
                }
            }
        }
    }

    /// A winrm target has a password, sends it readably only when allowed, and its TLS
    /// settings agree.
    fn winrm_login(&mut self, name: &str, t: &RawTarget) {
        let p = |k: &str| vec![key("targets"), key(name), key(k)];
        let base = vec![key("targets"), key(name)];
        if t.password.is_none() {
            self.err(
                &base,
                format!("winrm target `{name}` has no `password`"),
                Some("add `password: { env: VARIABLE }`".into()),
            );
        }
        if t.auth == Some(WinrmAuth::Basic) && !t.https && !t.allow_unencrypted {
            self.err(
                &p("auth"),
                "Basic authentication over plain HTTP would send the password readably",
                Some("set `https: true`, or use `auth: ntlm` (which encrypts messages); only on an isolated test network, `allow_unencrypted: true`".into()),
            );
        }
        self.winrm_tls(name, t);
    }

    /// A port that is one, a passphrase with its key, and template variables' names.
    fn target_values(&mut self, name: &str, t: &RawTarget) {
        let p = |k: &str| vec![key("targets"), key(name), key(k)];
        if t.port == Some(0) {
            self.err(
                &p("port"),
                "port 0 is not a port",
                Some("use the service's TCP port, e.g. 22".into()),
            );
        }
        if t.passphrase.is_some() && t.key.is_none() {
            self.err(
                &p("passphrase"),
                "a passphrase without a `key`",
                Some("add `key: PATH` or remove the passphrase".into()),
            );
        }
        for vname in t.vars.keys() {
            if !is_identifier(vname) {
                self.err(
                    &[key("targets"), key(name), key("vars"), key(vname)],
                    format!("`{vname}` cannot be used as a template variable"),
                    Some("use letters, digits and `_`, starting with a letter".into()),
                );
            }
        }
    }

    /// The checked target's settings with their defaults (port, shell, auth, reboot and boot
    /// id commands) and its paths resolved from the file that names them; what needed checking
    /// on its own (secrets, keepalive, relay, ssh_config) is left empty.
    fn resolved_target(&self, name: &str, t: &RawTarget) -> Target {
        let base = vec![key("targets"), key(name)];
        let kind = t.transport;
        let port = match kind {
            TransportKind::Local | TransportKind::Relay => None,
            TransportKind::Ssh => Some(t.port.unwrap_or(SSH_PORT)),
            TransportKind::Winrm => Some(t.port.unwrap_or(winrm_port(t.https))),
        };
        let shell = t.shell.unwrap_or(match kind {
            TransportKind::Winrm => ShellKind::Cmd,
            _ => ShellKind::Sh,
        });
        // `components()` drops the inner `./` a join leaves (`././known_hosts`).
        let resolve = |s: &Option<String>| {
            s.as_ref().map(|k| {
                self.dir_at(&base)
                    .join(expand_home(Path::new(k)))
                    .components()
                    .collect::<PathBuf>()
            })
        };
        Target {
            name: name.to_string(),
            transport: kind,
            host: t.host.clone(),
            port,
            https: t.https,
            user: t.user.clone(),
            password: None,
            key: resolve(&t.key),
            passphrase: None,
            known_hosts: resolve(&t.known_hosts),
            keepalive: None,
            shell,
            auth: match kind {
                TransportKind::Winrm => Some(t.auth.unwrap_or(WinrmAuth::Ntlm)),
                _ => None,
            },
            ca_file: resolve(&t.ca_file),
            cert_sha256: t.cert_sha256.clone(),
            insecure: t.insecure,
            allow_unencrypted: t.allow_unencrypted,
            jump: t.jump.clone(),
            proxy_hops: Vec::new(),
            from_ssh_config: Vec::new(),
            vars: t.vars.clone(),
            reboot_command: t
                .reboot_command
                .clone()
                .unwrap_or_else(|| default_reboot_command(shell).to_string()),
            boot_id_command: t
                .boot_id_command
                .clone()
                .unwrap_or_else(|| default_boot_id_command(shell).to_string()),
            relay: None,
        }
    }

    /// An ssh target's keepalive interval, the default if absent; None after an error.
    pub(super) fn keepalive(
        &mut self,
        path: &[Seg],
        text: Option<&str>,
    ) -> Option<std::time::Duration> {
        let Some(written) = text else {
            return Some(crate::target_defaults::DEFAULT_KEEPALIVE);
        };
        let d = self.duration(path, Some(written))?;
        // Keep in step with MIN_KEEPALIVE and MAX_KEEPALIVE.
        let help = || {
            Some("write whole seconds from 1s to 1h, e.g. `keepalive: 15s` (the default)".into())
        };
        if d < MIN_KEEPALIVE || d > MAX_KEEPALIVE {
            let what = if d < MIN_KEEPALIVE { "short" } else { "long" };
            self.err(
                path,
                format!("a keepalive of `{written}` is too {what}"),
                help(),
            );
            return None;
        }
        if d.subsec_nanos() != 0 {
            self.err(
                path,
                format!("`keepalive: {written}` is not a whole number of seconds"),
                help(),
            );
            return None;
        }
        u64::try_from(d.as_secs())
            .ok()
            .map(std::time::Duration::from_secs)
    }

    /// The TLS trust keys: meaningful with `https` only, and at most one of them.
    pub(super) fn winrm_tls(&mut self, name: &str, t: &RawTarget) {
        let p = |k: &str| vec![key("targets"), key(name), key(k)];
        let trust: Vec<&str> = [
            ("ca_file", t.ca_file.is_some()),
            ("cert_sha256", t.cert_sha256.is_some()),
            ("insecure", t.insecure),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect();
        if !t.https {
            for k in &trust {
                self.err(
                    &p(k),
                    format!("`{k}` applies only with `https: true`"),
                    Some("add `https: true`, or remove it".into()),
                );
            }
        } else if trust.len() > 1 {
            self.err(
                &p(trust[1]),
                format!(
                    "`{}` and `{}` both say how to trust the certificate",
                    trust[0], trust[1]
                ),
                Some("keep one of `ca_file`, `cert_sha256` and `insecure`".into()),
            );
        }
        if let Some(fp) = &t.cert_sha256 {
            if crate::digest::parse_cert_sha256(fp).is_none() {
                self.err(
                    &p("cert_sha256"),
                    "`cert_sha256` is not a SHA-256 fingerprint",
                    Some("write the 64 hex digits, e.g. as the certificate viewer shows them (`AB:CD:...`); runner ping prints the server's".into()),
                );
            }
        }
        if t.allow_unencrypted && t.https {
            self.err(
                &p("allow_unencrypted"),
                "`allow_unencrypted` has no effect with `https: true`",
                Some("remove it".into()),
            );
        } else if t.allow_unencrypted && t.auth != Some(WinrmAuth::Basic) {
            self.err(
                &p("allow_unencrypted"),
                "`allow_unencrypted` has no effect with NTLM, which always encrypts",
                Some("remove it (it is for `auth: basic` on isolated networks)".into()),
            );
        }
    }

    pub(super) fn groups(
        &mut self,
        raw: &RawPlaybook,
        targets: &BTreeMap<String, Target>,
    ) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        for (name, members) in &raw.groups {
            let base = vec![key("groups"), key(name)];
            if !is_name(name) {
                self.err(
                    &base,
                    format!("`{name}` is not a valid group name"),
                    Some("use lowercase letters, digits, `-` and `_`".into()),
                );
            }
            if raw.targets.contains_key(name) {
                self.err(
                    &base,
                    format!("`{name}` is both a target and a group"),
                    Some("rename one of them so that `on:` is unambiguous".into()),
                );
            }
            if members.is_empty() {
                self.err(
                    &base,
                    format!("group `{name}` is empty"),
                    Some("list at least one target".into()),
                );
            }
            for (i, m) in members.iter().enumerate() {
                if !raw.targets.contains_key(m) {
                    let mut p = base.clone();
                    p.push(Seg::Index(i));
                    let help = suggestion_or_choices(m, raw.targets.keys().map(String::as_str));
                    self.err(
                        &p,
                        format!("group `{name}` names `{m}`, which is not a target"),
                        Some(help),
                    );
                }
            }
            let _ = targets;
            out.insert(name.clone(), members.clone());
        }
        out
    }
}

/// How a target reboots when it does not say: by its shell.
fn default_reboot_command(shell: ShellKind) -> &'static str {
    match shell {
        ShellKind::Sh => "shutdown -r now",
        ShellKind::Cmd | ShellKind::Powershell => "shutdown /r /t 5",
    }
}

/// How a target's boot is told apart from the one before when it does not say: by its shell.
fn default_boot_id_command(shell: ShellKind) -> &'static str {
    match shell {
        ShellKind::Sh => "cat /proc/sys/kernel/random/boot_id",
        ShellKind::Cmd => "wmic os get lastbootuptime /value",
        ShellKind::Powershell => "(Get-WmiObject Win32_OperatingSystem).LastBootUpTime",
    }
}

/// What `~/.ssh/config` gives a target that does not say it itself (HostName always, as the
/// target's `host` is the alias), written into `eff`; returns what was taken, for the plan.
fn take_from_ssh_config(
    t: &RawTarget,
    found: &crate::ssh_config::HostSettings,
    eff: &mut RawTarget,
) -> Vec<String> {
    let mut taken = Vec::new();
    if let Some(h) = &found.host_name {
        taken.push(format!("HostName {h}"));
        eff.host = Some(h.clone());
    }
    if t.port.is_none() {
        if let Some(port) = found.port {
            taken.push(format!("Port {port}"));
            eff.port = Some(port);
        }
    }
    if t.user.is_none() {
        if let Some(u) = &found.user {
            taken.push(format!("User {u}"));
            eff.user = Some(u.clone());
        }
    }
    if t.key.is_none() && t.password.is_none() {
        if let Some(k) = &found.identity_file {
            taken.push(format!("IdentityFile {}", k.display()));
            eff.key = Some(k.display().to_string());
        }
    }
    taken
}
