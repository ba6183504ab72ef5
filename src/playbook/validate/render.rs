//! Rendering a step's templates against every target it runs on, and the variables they see.

use super::*;

impl Validator<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn render(
        &mut self,
        base: &[Seg],
        s: &RawStep,
        action: &Action,
        raw: &RawPlaybook,
        targets: &BTreeMap<String, Target>,
        target_name: &str,
        ok_codes: &[i64],
        inputs: &(Vec<EnvVar>, Option<SecretRef>),
    ) -> Option<Rendered> {
        let fields = Fields::new(base, action, raw, targets, target_name);
        let rendered_action = self.rendered_action(&fields, action)?;
        let check = match &s.check {
            Some(c) => Some(fields.render("check", c, self)?),
            None => None,
        };
        let rollback = match &s.rollback {
            Some(c) => Some(fields.render("rollback", c, self)?),
            None => None,
        };
        let (env, stdin) = inputs;
        let def_hash = def_hash(&rendered_action, &check, ok_codes, env, stdin);
        Some(Rendered {
            target: target_name.to_string(),
            action: rendered_action,
            check,
            rollback,
            def_hash,
            env: env.clone(),
            stdin: stdin.clone(),
        })
    }

    /// The action with its templates rendered (and a fetch's destination checked); a reboot
    /// takes its commands from the target.
    fn rendered_action(&mut self, fields: &Fields<'_>, action: &Action) -> Option<RenderedAction> {
        let render = |field: &str, text: &str, v: &mut Validator<'_>| fields.render(field, text, v);
        let target = fields.target;
        Some(match action {
            Action::Run(cmd) => RenderedAction::Run {
                command: render("run", cmd, self)?,
            },
            Action::Script(f) => RenderedAction::Script {
                path: f.path.clone(),
                sha256: f.sha256.clone(),
            },
            Action::Upload { src, dest } => RenderedAction::Upload {
                src: src.path.clone(),
                sha256: src.sha256.clone(),
                bytes: src.bytes,
                dest: render("dest", dest, self)?,
            },
            Action::Copy {
                from, path, dest, ..
            } => RenderedAction::Copy {
                from: from.clone(),
                from_address: fields.source.map(Target::address).unwrap_or_default(),
                path: render("path", path, self)?,
                dest: render("dest", dest, self)?,
            },
            Action::Fetch { path, dest } => RenderedAction::Fetch {
                path: render("path", path, self)?,
                dest: {
                    let written = render("dest", dest, self)?;
                    self.fetch_dest(&fields.at("dest"), &written)?
                },
            },
            Action::Manual(text) => RenderedAction::Manual {
                instructions: render("manual", text, self)?,
            },
            Action::Reboot { timeout } => RenderedAction::Reboot {
                command: target.map(|t| t.reboot_command.clone()).unwrap_or_default(),
                boot_id_command: target
                    .map(|t| t.boot_id_command.clone())
                    .unwrap_or_default(),
                timeout_secs: timeout.as_secs(),
            },
        })
    }
}

/// A step's identity: the hash of what it runs and checks, as rendered, with its ok codes and
/// (only when given, so that the identity of every step without them is unchanged) its
/// environment and stdin: references and plain values, never a secret's value.
fn def_hash(
    action: &RenderedAction,
    check: &Option<String>,
    ok_codes: &[i64],
    env: &Vec<EnvVar>,
    stdin: &Option<SecretRef>,
) -> String {
    let mut basis = serde_json::json!({
        "action": action,
        "check": check,
        "ok_codes": ok_codes,
    });
    if let Some(b) = basis.as_object_mut() {
        if !env.is_empty() {
            b.insert("env".into(), serde_json::json!(env));
        }
        if let Some(r) = stdin {
            b.insert("stdin".into(), serde_json::json!(r));
        }
    }
    sha256_hex(basis.to_string().as_bytes())
}

/// The templates of one step on one target: the variables each field sees, and where an error
/// in it points.
struct Fields<'a> {
    base: &'a [Seg],
    /// The key an action's `path` and `dest` are under.
    under: Option<&'static str>,
    raw: &'a RawPlaybook,
    target: Option<&'a Target>,
    target_name: &'a str,
    ctx: Value,
    /// A copy's `path` is on its source, and sees that target's variables.
    source: Option<&'a Target>,
    source_name: &'a str,
    source_ctx: Value,
}

impl<'a> Fields<'a> {
    fn new(
        base: &'a [Seg],
        action: &'a Action,
        raw: &'a RawPlaybook,
        targets: &'a BTreeMap<String, Target>,
        target_name: &'a str,
    ) -> Self {
        let target = targets.get(target_name);
        let under = match action {
            Action::Upload { .. } => Some("upload"),
            Action::Copy { .. } => Some("copy"),
            Action::Fetch { .. } => Some("fetch"),
            _ => None,
        };
        let source_name = match action {
            Action::Copy { from, .. } => from.as_str(),
            _ => target_name,
        };
        let source = targets.get(source_name);
        let source_ctx = context(raw, source, source_name);
        let ctx = context(raw, target, target_name);
        Fields {
            base,
            under,
            raw,
            target,
            target_name,
            ctx,
            source,
            source_name,
            source_ctx,
        }
    }

    /// Where `field` is in the file.
    fn at(&self, field: &str) -> Vec<Seg> {
        let mut q = self.base.to_vec();
        q.extend(
            self.under
                .filter(|_| matches!(field, "path" | "dest"))
                .map(key),
        );
        q.push(key(field));
        q
    }

    /// `text` of `field` rendered; None after an error, said on `v`.
    fn render(&self, field: &str, text: &str, v: &mut Validator<'_>) -> Option<String> {
        let (ctx, target, target_name) = match field {
            "path" => (&self.source_ctx, self.source, self.source_name),
            _ => (&self.ctx, self.target, self.target_name),
        };
        match v.templates.render(text, ctx) {
            Ok(s) => Some(s),
            Err(e) => {
                let q = self.at(field);
                let (msg, help) = self.template_error(field, e, target, target_name);
                v.err(&q, msg, Some(help));
                None
            }
        }
    }

    /// The message and help for a template of `field` that does not render.
    fn template_error(
        &self,
        field: &str,
        e: TemplateError,
        target: Option<&Target>,
        target_name: &str,
    ) -> (String, String) {
        let raw = self.raw;
        let on = if target.is_some() {
            format!(" for target `{target_name}`")
        } else {
            String::new()
        };
        match e {
            TemplateError::Undefined(names) => {
                let known: Vec<String> = ctx_names(raw, target);
                let first = &names[0];
                (
                    format!(
                        "`{field}` uses undefined variable{} {}{on}",
                        if names.len() == 1 { "" } else { "s" },
                        names
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    suggestion_or_choices(first, known.iter().map(String::as_str)),
                )
            }
            TemplateError::Invalid(m) => (
                format!("`{field}` is not a valid template{on}: {m}"),
                "templates look like `{{ var }}`; write `{{ '{{' }}` for a literal `{{`"
                    .to_string(),
            ),
        }
    }
}

/// The variables a template sees: playbook vars, the target's vars over them, and `target`.
pub(super) fn context(raw: &RawPlaybook, target: Option<&Target>, target_name: &str) -> Value {
    let mut map: BTreeMap<String, Value> = raw
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), json_to_value(v)))
        .collect();
    if let Some(t) = target {
        for (k, v) in &t.vars {
            map.insert(k.clone(), json_to_value(v));
        }
        let info = TargetInfo {
            name: t.name.clone(),
            host: t.host.clone().unwrap_or_default(),
            user: t.user.clone().unwrap_or_default(),
            port: t.port,
            transport: kind_name(t.transport),
        };
        map.insert("target".into(), Value::from_object(info));
    } else {
        let info = TargetInfo {
            name: target_name.to_string(),
            host: String::new(),
            user: String::new(),
            port: None,
            transport: "",
        };
        map.insert("target".into(), Value::from_object(info));
    }
    Value::from(map)
}

/// `target` in a template: written alone it is the target's name (`{{ target }}`), and it has
/// the fields `name`, `host`, `user`, `port` and `transport`. A missing field is an error, as
/// every undefined value is.
#[derive(Debug)]
struct TargetInfo {
    name: String,
    host: String,
    user: String,
    port: Option<u16>,
    transport: &'static str,
}

impl minijinja::value::Object for TargetInfo {
    fn get_value(self: &std::sync::Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "name" => Value::from(self.name.clone()),
            "host" => Value::from(self.host.clone()),
            "user" => Value::from(self.user.clone()),
            "port" => self.port.map(Value::from).unwrap_or(Value::from(())),
            "transport" => Value::from(self.transport),
            _ => return None,
        })
    }

    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Str(&["name", "host", "user", "port", "transport"])
    }

    fn render(self: &std::sync::Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result
    where
        Self: Sized + 'static,
    {
        f.write_str(&self.name)
    }
}

pub(super) fn ctx_names(raw: &RawPlaybook, target: Option<&Target>) -> Vec<String> {
    let mut names: BTreeSet<String> = raw.vars.keys().cloned().collect();
    if let Some(t) = target {
        names.extend(t.vars.keys().cloned());
    }
    names.insert("target".into());
    names.into_iter().collect()
}
