//! Validation of steps: ids, ordering, actions, retries and timeouts, inputs and files.

use super::*;

impl Validator<'_> {
    pub(super) fn steps(
        &mut self,
        raw: &RawPlaybook,
        targets: &BTreeMap<String, Target>,
        groups: &BTreeMap<String, Vec<String>>,
        window: Option<&Window>,
        files: &mut Vec<FileRef>,
    ) -> Vec<Step> {
        if raw.steps.is_empty() {
            self.err(
                &[key("steps")],
                "the playbook has no steps",
                Some("add at least one step with `id:` and `run:`".into()),
            );
        }
        let fit = match (window, self.fit_from) {
            (Some(w), Some(from)) if !w.is_unrestricted() => Some(Fit::new(w, from)),
            _ => None,
        };
        let mut seen: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for (i, s) in raw.steps.iter().enumerate() {
            if let Some(step) = self.step(i, s, raw, targets, groups, &seen, fit.as_ref(), files) {
                out.push(step);
            }
            seen.push(s.id.clone());
        }
        out
    }

    /// One step, checked phase by phase (each phase reports all it finds); `None` if any
    /// phase found a problem.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn step(
        &mut self,
        i: usize,
        s: &RawStep,
        raw: &RawPlaybook,
        targets: &BTreeMap<String, Target>,
        groups: &BTreeMap<String, Vec<String>>,
        earlier: &[String],
        fit: Option<&Fit<'_>>,
        files: &mut Vec<FileRef>,
    ) -> Option<Step> {
        let base = vec![key("steps"), Seg::Index(i)];
        let p = |k: &str| {
            let mut v = base.clone();
            v.push(key(k));
            v
        };
        let before = self.diags.len();
        self.step_id(&p, s, earlier);
        let manual = self.step_kind(&base, &p, s);
        let (on, expanded) = match &s.copy {
            Some(c) => self.copy_on(&p, s, c, raw),
            None => self.step_on(&base, &p, s, raw, targets, groups, manual),
        };
        let Limits {
            estimate,
            timeout,
            retries,
            retry_delay,
            ok_codes,
        } = self.step_limits(&p, s, fit);
        let deadline = self.step_deadline(&p, s, raw, earlier);
        let action = self.step_action(&p, s, files);
        let reboot_on = self.step_action_rules(&p, s, action.as_ref());

        let inputs = self.inputs(&p, s, action.as_ref(), estimate, &expanded, targets);
        self.relay_step(&p, s, &expanded, targets);

        if self.diags.len() != before {
            return None;
        }
        let action = action?;
        let pair_targets = if manual {
            vec![OPERATOR.to_string()]
        } else {
            expanded.clone()
        };
        let mut rendered = Vec::new();
        for t in &pair_targets {
            rendered.push(self.render(&base, s, &action, raw, targets, t, &ok_codes, &inputs)?);
        }
        self.relay_commands(&p, &rendered, targets);
        if self.diags.len() != before {
            return None;
        }
        if let Action::Fetch { .. } = action {
            self.fetch_dests_differ(&p, &rendered)?;
        }
        let transfers = matches!(action, Action::Copy { .. } | Action::Fetch { .. });
        let fetches = matches!(action, Action::Fetch { .. });
        Some(Step {
            index: i,
            id: s.id.clone(),
            name: s.name.clone(),
            phase: s.phase.clone(),
            on,
            targets: pair_targets,
            action,
            ok_codes,
            check: s.check.clone(),
            rollback: s.rollback.clone(),
            estimate,
            timeout,
            retries,
            retry_delay,
            idempotent: s.idempotent || transfers,
            point_of_no_return: s.point_of_no_return,
            // A fetch writes on this machine only.
            changes_nothing: s.changes == super::super::raw::Changes::Nothing || fetches,
            business_hours: s.business_hours,
            deadline,
            reboot_on,
            detach: s.detach,
            line: self.src.locate(&p("id")).0.line,
            rendered,
        })
    }

    /// A step's id: a valid name, not used by an earlier step.
    fn step_id(&mut self, p: &dyn Fn(&str) -> Vec<Seg>, s: &RawStep, earlier: &[String]) {
        if !is_name(&s.id) {
            self.err(
                &p("id"),
                format!("`{}` is not a valid step id", s.id),
                Some(
                    "use lowercase letters, digits, `-` and `_`, e.g. `copy-company-share`".into(),
                ),
            );
        } else if earlier.contains(&s.id) {
            self.err(
                &p("id"),
                format!("step id `{}` is used twice", s.id),
                Some("step ids must be unique: resume and rollback find steps by id".into()),
            );
        }
    }

    /// Exactly one action, and no keys a manual step cannot have. Returns whether it is manual.
    fn step_kind(&mut self, base: &[Seg], p: &dyn Fn(&str) -> Vec<Seg>, s: &RawStep) -> bool {
        let actions: Vec<&str> = [
            ("run", s.run.is_some()),
            ("script", s.script.is_some()),
            ("upload", s.upload.is_some()),
            ("copy", s.copy.is_some()),
            ("fetch", s.fetch.is_some()),
            ("manual", s.manual.is_some()),
            ("reboot", s.reboot.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect();
        match actions.len() {
            0 => self.err(base, format!("step `{}` has nothing to do", s.id), Some("give it exactly one of `run`, `script`, `upload`, `copy`, `fetch`, `manual` or `reboot`".into())),
            1 => {}
            _ => self.err(&p(actions[1]), format!("step `{}` has both `{}` and `{}`", s.id, actions[0], actions[1]), Some("a step has exactly one of `run`, `script`, `upload`, `copy`, `fetch`, `manual` or `reboot`: split it into two steps".into())),
        }
        let manual = s.manual.is_some();
        if manual {
            for (k, present) in [
                ("check", s.check.is_some()),
                ("rollback", s.rollback.is_some()),
                ("ok_codes", s.ok_codes.is_some()),
                ("timeout", s.timeout.is_some()),
                ("retries", s.retries.is_some()),
                ("retry_delay", s.retry_delay.is_some()),
                ("reboot_on", s.reboot_on.is_some()),
                ("detach", s.detach.is_some()),
            ] {
                if present {
                    self.err(&p(k), format!("a manual step has no `{k}`"), Some("write what the operator must verify into the `manual` text, or make it a separate step".into()));
                }
            }
        }
        manual
    }

    /// Where the step runs: `on` as written, and the targets its groups expand to.
    #[allow(clippy::too_many_arguments)]
    fn step_on(
        &mut self,
        base: &[Seg],
        p: &dyn Fn(&str) -> Vec<Seg>,
        s: &RawStep,
        raw: &RawPlaybook,
        targets: &BTreeMap<String, Target>,
        groups: &BTreeMap<String, Vec<String>>,
        manual: bool,
    ) -> (Vec<String>, Vec<String>) {
        let mut on = Vec::new();
        let mut expanded: Vec<String> = Vec::new();
        match &s.on {
            None if !manual => self.err(
                base,
                format!("step `{}` has no `on`", s.id),
                Some(format!(
                    "say where it runs: a target or group ({})",
                    names_list(targets.keys().chain(groups.keys()))
                )),
            ),
            None => {}
            Some(o) => {
                let items: Vec<(Vec<Seg>, &String)> = match o {
                    RawOn::One(n) => vec![(p("on"), n)],
                    RawOn::List(list) => list
                        .iter()
                        .enumerate()
                        .map(|(j, n)| {
                            let mut q = p("on");
                            q.push(Seg::Index(j));
                            (q, n)
                        })
                        .collect(),
                };
                if items.is_empty() {
                    self.err(
                        &p("on"),
                        "`on` is an empty list",
                        Some("name at least one target or group".into()),
                    );
                }
                for (q, n) in items {
                    on.push(n.clone());
                    if let Some(members) = groups.get(n) {
                        for m in members {
                            if !expanded.contains(m) {
                                expanded.push(m.clone());
                            }
                        }
                    } else if raw.targets.contains_key(n) {
                        if !expanded.contains(n) {
                            expanded.push(n.clone());
                        }
                    } else {
                        let help = suggestion_or_choices(
                            n,
                            raw.targets
                                .keys()
                                .chain(raw.groups.keys())
                                .map(String::as_str),
                        );
                        self.err(
                            &q,
                            format!("`{n}` is neither a target nor a group"),
                            Some(help),
                        );
                    }
                }
            }
        }
        (on, expanded)
    }

    /// Estimate, timeout, retries and success codes, and whether the estimate fits the window.
    fn step_limits(
        &mut self,
        p: &dyn Fn(&str) -> Vec<Seg>,
        s: &RawStep,
        fit: Option<&Fit<'_>>,
    ) -> Limits {
        let estimate = self.duration(&p("estimate"), s.estimate.as_deref());
        let timeout = self.duration(&p("timeout"), s.timeout.as_deref());
        let retry_delay = self
            .duration(&p("retry_delay"), s.retry_delay.as_deref())
            .unwrap_or(SignedDuration::ZERO);
        if timeout == Some(SignedDuration::ZERO) {
            self.err(
                &p("timeout"),
                "a timeout of 0 would stop the step at once",
                Some("give a real limit, e.g. `timeout: 2h`, or leave it out".into()),
            );
        }
        let retries = s.retries.unwrap_or(0);
        if retries > MAX_RETRIES {
            self.err(
                &p("retries"),
                format!("{retries} retries is more than the limit of {MAX_RETRIES}"),
                Some("use fewer retries with a longer `retry_delay`".into()),
            );
        }
        let ok_codes = s.ok_codes.clone().unwrap_or_else(|| vec![0]);
        if ok_codes.is_empty() {
            self.err(
                &p("ok_codes"),
                "`ok_codes` is empty, so the step could never succeed",
                Some("list the exit codes that mean success, e.g. [0]".into()),
            );
        }
        if s.business_hours == super::super::BusinessHoursPolicy::Refuse {
            if let Some(message) = fit.and_then(|f| f.misfit(&s.id, estimate)) {
                self.err(&p("estimate"), message,
                    Some("split the step into parts that fit a night, or set `business_hours: allow` if it is truly read-only; to check from another time, set RUNNER_NOW to an RFC 3339 instant (`runner plan --start` shows where each step goes)".into()));
            }
        }
        Limits {
            estimate,
            timeout,
            retries,
            retry_delay,
            ok_codes,
        }
    }

    /// `deadline`: counted from an earlier step's end.
    fn step_deadline(
        &mut self,
        p: &dyn Fn(&str) -> Vec<Seg>,
        s: &RawStep,
        raw: &RawPlaybook,
        earlier: &[String],
    ) -> Option<Deadline> {
        match &s.deadline {
            None => None,
            Some(d) => {
                if !earlier.contains(&d.after) {
                    let help = if d.after == s.id {
                        "a deadline counts from an earlier step's end, not the step's own"
                            .to_string()
                    } else if raw.steps.iter().any(|x| x.id == d.after) {
                        format!("`{}` comes later in the playbook; a deadline counts from an earlier step", d.after)
                    } else {
                        suggestion_or_choices(&d.after, earlier.iter().map(String::as_str))
                    };
                    let mut q = p("deadline");
                    q.push(key("after"));
                    self.err(
                        &q,
                        format!(
                            "`deadline.after` names `{}`, which is not an earlier step",
                            d.after
                        ),
                        Some(help),
                    );
                }
                let mut q = p("deadline");
                q.push(key("within"));
                self.duration(&q, Some(&d.within)).map(|within| Deadline {
                    after: d.after.clone(),
                    within,
                })
            }
        }
    }

    /// What the step does: its one action, with its files resolved.
    fn step_action(
        &mut self,
        p: &dyn Fn(&str) -> Vec<Seg>,
        s: &RawStep,
        files: &mut Vec<FileRef>,
    ) -> Option<Action> {
        if let Some(cmd) = &s.run {
            if cmd.trim().is_empty() {
                self.err(
                    &p("run"),
                    "`run` is empty",
                    Some("give the command to run".into()),
                );
            }
            Some(Action::Run(cmd.clone()))
        } else if let Some(script) = &s.script {
            self.file(&p("script"), script, files).map(Action::Script)
        } else if let Some(up) = &s.upload {
            let mut q = p("upload");
            q.push(key("src"));
            let src = self.file(&q, &up.src, files);
            if up.dest.trim().is_empty() {
                let mut q = p("upload");
                q.push(key("dest"));
                self.err(
                    &q,
                    "`upload.dest` is empty",
                    Some("give the destination path on the target".into()),
                );
            }
            src.map(|src| Action::Upload {
                src,
                dest: up.dest.clone(),
            })
        } else if s.copy.is_some() || s.fetch.is_some() {
            self.transfer_action(p, s)
        } else {
            if let Some(m) = &s.manual {
                Some(Action::Manual(m.clone()))
            } else if let Some(r) = &s.reboot {
                let mut q = p("reboot");
                q.push(key("timeout"));
                let timeout = match &r.timeout {
                    Some(t) => self.duration(&q, Some(t)),
                    None => Some(super::super::DEFAULT_REBOOT_TIMEOUT),
                };
                timeout.map(|timeout| Action::Reboot { timeout })
            } else {
                None
            }
        }
    }

    /// The keys that only fit some actions (`reboot_on`, `detach`) or a step that changes
    /// something (`rollback`, `point_of_no_return`). Returns `reboot_on`.
    fn step_action_rules(
        &mut self,
        p: &dyn Fn(&str) -> Vec<Seg>,
        s: &RawStep,
        action: Option<&Action>,
    ) -> Vec<i64> {
        let reboot_on = s.reboot_on.clone().unwrap_or_default();
        if !reboot_on.is_empty()
            && !matches!(action, Some(Action::Run(_)) | Some(Action::Script(_)))
        {
            self.err(
                &p("reboot_on"),
                "`reboot_on` applies to `run` and `script` steps",
                Some("remove it, or use a separate `reboot:` step".into()),
            );
        }
        if s.changes == super::super::raw::Changes::Nothing {
            if s.rollback.is_some() {
                self.err(
                    &p("rollback"),
                    "a step that changes nothing has nothing to roll back",
                    Some("remove `rollback`, or remove `changes: none` if the step does change its targets".into()),
                );
            }
            if s.point_of_no_return {
                self.err(
                    &p("point_of_no_return"),
                    "a step that changes nothing cannot be a point of no return",
                    Some("remove one of `changes: none` and `point_of_no_return: true`".into()),
                );
            }
            if s.reboot.is_some() || s.reboot_on.is_some() {
                self.err(
                    &p("changes"),
                    "a reboot changes the target: `changes: none` does not fit",
                    Some("remove `changes: none`".into()),
                );
            }
        }
        if s.detach == Some(true) && !matches!(action, Some(Action::Run(_))) {
            self.err(
                &p("detach"),
                "only `run` steps can run detached",
                Some("remove `detach`, or turn the step into a `run` step".into()),
            );
        }
        reboot_on
    }

    /// A step's `env` and `stdin`: valid names, secrets by reference, and only where they can
    /// reach the command without a command line or a file (run and script steps; `sh` over
    /// SSH; detached, only `env` on `sh` targets: see `detached_inputs`).
    pub(super) fn inputs(
        &mut self,
        p: &dyn Fn(&str) -> Vec<Seg>,
        s: &RawStep,
        action: Option<&Action>,
        estimate: Option<SignedDuration>,
        expanded: &[String],
        targets: &BTreeMap<String, Target>,
    ) -> (Vec<EnvVar>, Option<SecretRef>) {
        let mut env = Vec::new();
        for (name, value) in s.env.iter().flatten() {
            let mut q = p("env");
            q.push(key(name));
            if !is_identifier(name) {
                self.err(
                    &q,
                    format!("`{name}` is not a valid environment variable name"),
                    Some(
                        "use letters, digits and `_`, not starting with a digit, e.g. `ADMIN_PW`"
                            .into(),
                    ),
                );
                continue;
            }
            match value {
                RawEnvValue::Plain(text) if text.contains('\0') => self.err(
                    &q,
                    format!("`env.{name}` contains a NUL byte"),
                    Some("environment variables cannot hold NUL bytes".into()),
                ),
                RawEnvValue::Plain(text) => env.push(EnvVar {
                    name: name.clone(),
                    value: EnvValue::Plain(text.clone()),
                }),
                RawEnvValue::Secret(r) => {
                    if let Some(r) = self.secret(&q, &Some(r.clone())) {
                        env.push(EnvVar {
                            name: name.clone(),
                            value: EnvValue::Secret(r),
                        });
                    }
                }
            }
        }
        let stdin = self.secret(&p("stdin"), &s.stdin);
        let key_given = if s.env.is_some() { "env" } else { "stdin" };
        if s.env.is_none() && s.stdin.is_none() {
            return (env, stdin);
        }
        let runs = matches!(action, Some(Action::Run(_)) | Some(Action::Script(_)));
        if action.is_some() && !runs {
            self.err(
                &p(key_given),
                format!("`{key_given}` applies to `run` and `script` steps"),
                Some("remove it, or pass the value to a `run` or `script` step".into()),
            );
        }
        self.detached_inputs(p, s, action, estimate, expanded, targets);
        for name in expanded {
            if let Some(t) = targets.get(name) {
                if t.transport == TransportKind::Ssh && t.shell != ShellKind::Sh {
                    self.err(
                        &p(key_given),
                        format!("`{key_given}` reaches commands over SSH only with `shell: sh`, and target `{name}` uses another shell"),
                        Some("run this step on an `sh` target, or reach the Windows server over WinRM, where `env` and `stdin` work with every shell".into()),
                    );
                }
            }
        }
        (env, stdin)
    }

    /// A local file the step sends: it must exist now, and its hash goes into the plan.
    pub(super) fn file(
        &mut self,
        path: &[Seg],
        written: &str,
        files: &mut Vec<FileRef>,
    ) -> Option<FileRef> {
        if let Some(known) = files.iter().find(|f| f.written == written) {
            return Some(known.clone());
        }
        let dir = self.dir_at(path);
        let mut full = dir.join(expand_home(Path::new(written)));
        if self.src.locate_origin(path).0 != 0 {
            full = super::super::compose::normalize(&full);
        }
        match crate::digest::FileDigest::of_file(&full) {
            Ok(crate::digest::FileDigest { sha256, bytes }) => {
                let f = FileRef {
                    written: written.to_string(),
                    path: full,
                    sha256,
                    bytes,
                };
                files.push(f.clone());
                Some(f)
            }
            Err(e) => {
                self.err(
                    path,
                    format!("cannot read `{written}`: {e}"),
                    Some(format!(
                        "paths are relative to the folder of the file that names them ({})",
                        dir.display()
                    )),
                );
                None
            }
        }
    }
}

/// A step's limits, as [`Validator::step_limits`] checked them.
struct Limits {
    estimate: Option<SignedDuration>,
    timeout: Option<SignedDuration>,
    retries: u32,
    retry_delay: SignedDuration,
    ok_codes: Vec<i64>,
}
