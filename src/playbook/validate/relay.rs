//! Validation of relay targets (`transport: relay`, `via`, `run`) and of the steps on them:
//! what a command line through another target can carry, and what it cannot.

use super::super::relay::{chain, cmd_refuses, Relay, COMMAND};
use super::*;

impl Validator<'_> {
    /// A target's `via` and `run`: both on a relay, neither elsewhere, `{command}` once.
    pub(super) fn relay_of(&mut self, name: &str, t: &RawTarget) -> Option<Relay> {
        let p = |k: &str| vec![key("targets"), key(name), key(k)];
        if t.transport != TransportKind::Relay {
            for (k, present) in [("via", t.via.is_some()), ("run", t.run.is_some())] {
                if present {
                    self.err(
                        &p(k),
                        format!("`{k}` applies only to relay targets"),
                        Some(format!("remove it, or use `transport: relay` for `{name}`")),
                    );
                }
            }
            return None;
        }
        let base = vec![key("targets"), key(name)];
        if t.ssh_config {
            self.err(
                &p("ssh_config"),
                "`ssh_config` applies only to ssh targets",
                Some("remove it: a relay is reached through its `via` target".into()),
            );
        }
        let via = t.via.clone().filter(|v| !v.trim().is_empty());
        if via.is_none() {
            self.err(
                &base,
                format!("relay target `{name}` has no `via`"),
                Some("add `via: TARGET`, the target that runs this one's commands".into()),
            );
        }
        let run = t.run.clone().filter(|r| !r.trim().is_empty());
        match &run {
            None => self.err(
                &base,
                format!("relay target `{name}` has no `run`"),
                Some(format!("add the command line the `via` target runs, with `{COMMAND}` where the command goes, e.g. `run: 'psexec \\\\{name} -accepteula -nobanner cmd /c {COMMAND}'`")),
            ),
            Some(r) if r.matches(COMMAND).count() != 1 => self.err(
                &p("run"),
                format!("`run` must contain `{COMMAND}` exactly once, and has it {} times", r.matches(COMMAND).count()),
                Some(format!("write `{COMMAND}` where the step's command goes (it is quoted for the `via` target's shell), e.g. `sh -c {COMMAND}`")),
            ),
            Some(_) => {}
        }
        Some(Relay {
            via: via?,
            run: run?,
        })
    }

    /// Each `via` names another target, no chain of relays comes back to where it started, and
    /// a relay without `shell` takes its `via` target's.
    pub(super) fn relays(&mut self, raw: &RawPlaybook, targets: &mut BTreeMap<String, Target>) {
        for (name, t) in &raw.targets {
            let Some(via) = t
                .via
                .as_ref()
                .filter(|_| t.transport == TransportKind::Relay)
            else {
                continue;
            };
            let at = vec![key("targets"), key(name), key("via")];
            if !raw.targets.contains_key(via) {
                self.no_such_target(&at, "via", via, name, raw);
                continue;
            }
            let mut seen = vec![name.clone()];
            let mut next = Some(via.clone());
            while let Some(n) = next {
                if seen.contains(&n) {
                    if n == *name {
                        seen.push(n);
                        self.err(
                            &at,
                            format!("the relays of `{name}` go round in a circle: {}", seen.join(" -> ")),
                            Some("the last target of a chain of relays must be reachable itself (ssh, winrm or local)".into()),
                        );
                    }
                    break;
                }
                next = raw
                    .targets
                    .get(&n)
                    .filter(|t| t.transport == TransportKind::Relay)
                    .and_then(|t| t.via.clone());
                seen.push(n);
            }
        }
        // A relay whose `shell` is not written speaks its `via` target's.
        let unwritten: Vec<String> = raw
            .targets
            .iter()
            .filter(|(_, t)| t.transport == TransportKind::Relay && t.shell.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        for name in unwritten {
            let shell = chain(targets, &name)
                .iter()
                .skip(1)
                .find(|t| {
                    t.relay.is_none() || raw.targets.get(&t.name).is_some_and(|r| r.shell.is_some())
                })
                .map(|t| t.shell);
            if let (Some(shell), Some(t)) = (shell, targets.get_mut(&name)) {
                t.shell = shell;
            }
        }
    }

    /// What a step on a relay target may do: run commands, attached, without `env` or
    /// `stdin`. Everything else would need a channel the relay's command line does not give.
    pub(super) fn relay_step(
        &mut self,
        p: &dyn Fn(&str) -> Vec<Seg>,
        s: &RawStep,
        expanded: &[String],
        targets: &BTreeMap<String, Target>,
    ) {
        // A copy's source is not among the step's targets, but is reached as much as they are.
        let from = s.copy.as_ref().map(|c| c.from.clone());
        let Some(t) = expanded
            .iter()
            .chain(from.iter())
            .filter_map(|n| targets.get(n))
            .find(|t| t.relay.is_some())
        else {
            return;
        };
        let (name, via) = (&t.name, t.relay.as_ref().map_or("", |r| r.via.as_str()));
        let refused: [(&str, bool, String, &str); 8] = [
            ("upload", s.upload.is_some(), format!("a relay target cannot receive files: `{name}` is reached only through a command line that `{via}` runs"), "upload the file to a share on `{via}` and copy it from there with a `run` step (e.g. `copy \\\\via\\share\\file C:\\dest`)"),
            ("copy", s.copy.is_some(), format!("a relay target cannot send or receive files: `{name}` is reached only through a command line that `{via}` runs"), "copy the file through a share on `{via}` with `run` steps"),
            ("fetch", s.fetch.is_some(), format!("a relay target cannot send files: `{name}` is reached only through a command line that `{via}` runs"), "have the far machine write the file to a share on `{via}`, and fetch it from `{via}`"),
            ("script", s.script.is_some(), format!("`script` steps cannot run on a relay target: the script would first have to be copied to `{name}`, which a relay cannot do"), "write the commands as a `run` step, or keep the script on the far machine and `run` it there"),
            ("reboot", s.reboot.is_some(), format!("`reboot` steps cannot run on relay target `{name}`: waiting for its restart needs a boot id read from it directly"), "reboot it with a `run` step (e.g. the Resource Kit's `shutdown /r`) and follow it with a step whose `check` sees it back"),
            ("reboot_on", s.reboot_on.is_some(), format!("`reboot_on` cannot be used on relay target `{name}`: waiting for its restart needs a boot id read from it directly"), "remove it, and reboot with a separate `run` step"),
            ("detach", s.detach == Some(true), format!("steps on relay target `{name}` cannot run detached: a detached job keeps its output and status in a job folder on the target, and the far end of a relay has no shell runner can manage it with"), "set `detach: false` (relay steps run attached unless told otherwise); a job that must outlive the connection can be started by the relayed command itself"),
            (if s.env.is_some() { "env" } else { "stdin" }, s.env.is_some() || s.stdin.is_some(), format!("`env` and `stdin` cannot reach a command on relay target `{name}`: `{via}` would have to put the values on the relayed command line, where every process list shows them"), "pass the value another way on the far machine (a file only administrators can read), or run the step on `{via}` itself"),
        ];
        for (k, present, msg, help) in refused {
            if present {
                self.err(&p(k), msg, Some(help.replace("{via}", via)));
            }
        }
    }

    /// The commands of a step's pairs on relay targets whose `via` runs `cmd`: `cmd` cannot
    /// be given `"`, `%` or a line break literally (see [`cmd_refuses`]).
    pub(super) fn relay_commands(
        &mut self,
        p: &dyn Fn(&str) -> Vec<Seg>,
        rendered: &[Rendered],
        targets: &BTreeMap<String, Target>,
    ) {
        for r in rendered {
            let Some(relay) = targets.get(&r.target).and_then(|t| t.relay.as_ref()) else {
                continue;
            };
            if targets.get(&relay.via).map(|v| v.shell) != Some(ShellKind::Cmd) {
                continue;
            }
            let command = match &r.action {
                RenderedAction::Run { command } => Some(command.as_str()),
                _ => None,
            };
            for (k, text) in [
                ("run", command),
                ("check", r.check.as_deref()),
                ("rollback", r.rollback.as_deref()),
            ] {
                let Some(c) = text.and_then(cmd_refuses) else {
                    continue;
                };
                let shown = match c {
                    '\n' => "a line break".to_string(),
                    '\r' => "a carriage return".to_string(),
                    c => format!("`{c}`"),
                };
                self.err(
                    &p(k),
                    format!("the {k} command for `{}` holds {shown}, which `{}` (a cmd shell) cannot pass on through its `run` line literally: cmd expands `%NAME%` even inside quotes, ends a command at a line break, and `\"` would end the quoted command", r.target, relay.via),
                    Some(format!("write it without {shown} (one line; a cmd script on the far machine can hold the rest), or relay through a `via` target with `shell: sh` or `shell: powershell`")),
                );
            }
        }
    }
}
