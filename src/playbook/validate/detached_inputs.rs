//! A detached step's `env` and `stdin`. On `sh` targets the job gets its `env` without the
//! values touching the target's disk: the launcher reads them from its standard input (as an
//! attached command does), exports them and starts the job in its own session, so they live
//! in the job's processes only, and a reattach after a runner restart needs nothing more. The
//! rest is refused: `stdin` (the job outlives the connection that would carry it), and `env`
//! on Windows, where the job is started through WMI and inherits nothing from the shell.

use super::*;

impl Validator<'_> {
    pub(super) fn detached_inputs(
        &mut self,
        p: &dyn Fn(&str) -> Vec<Seg>,
        s: &RawStep,
        action: Option<&Action>,
        estimate: Option<SignedDuration>,
        expanded: &[String],
        targets: &BTreeMap<String, Target>,
    ) {
        if !matches!(action, Some(Action::Run(_))) {
            return;
        }
        let detached: Vec<&Target> = expanded
            .iter()
            .filter_map(|n| targets.get(n))
            .filter(|t| {
                let by_estimate =
                    t.relay.is_none() && estimate.is_some_and(|e| e >= super::super::DETACH_FROM);
                s.detach.unwrap_or(by_estimate)
            })
            .collect();
        if detached.is_empty() {
            return;
        }
        let help = "set `detach: false` on this step (steps estimated at 15 minutes or more run detached by default)";
        if s.stdin.is_some() {
            self.err(
                &p("stdin"),
                "a step with `stdin` cannot run detached: the job outlives the connection that would carry its standard input, so the value would have to wait on the target's disk",
                Some(format!("pass the value in `env` instead (a detached job on an `sh` target gets its `env` in memory only), or {help}")),
            );
        }
        let windows: Vec<&str> = detached
            .iter()
            .filter(|t| t.shell != ShellKind::Sh && t.relay.is_none())
            .map(|t| t.name.as_str())
            .collect();
        if s.env.is_some() && !windows.is_empty() {
            self.err(
                &p("env"),
                format!("a step with `env` cannot run detached on {}: a detached job on Windows is started through WMI (Win32_Process.Create), which gives it nothing of the shell's environment, so the values would have to be written into its job folder on the target's disk", windows.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
                Some(format!("{help}: attached, `env` reaches the command in the WinRM shell's environment")),
            );
        }
    }
}
