//! `{{ var }}` templates in commands, rendered with minijinja in strict mode: an undefined
//! variable is an error at validation time, never an empty string in a command at 2 a.m.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior, Value};

pub struct Templates {
    env: Environment<'static>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// Names used by the template that the context does not define.
    Undefined(Vec<String>),
    /// Syntax or evaluation error, as minijinja describes it.
    Invalid(String),
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

impl Templates {
    pub fn new() -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Keep a block scalar's last newline: the command runs exactly as written.
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        Templates { env }
    }

    /// Renders `text` with `ctx`. Text without template syntax is returned as is.
    pub fn render(&self, text: &str, ctx: &Value) -> Result<String, TemplateError> {
        if !has_syntax(text) {
            return Ok(text.to_string());
        }
        let tmpl = self
            .env
            .template_from_str(text)
            .map_err(|e| TemplateError::Invalid(describe(&e)))?;
        let defined = |name: &str| {
            ctx.get_attr(name)
                .map(|v| !v.is_undefined())
                .unwrap_or(false)
        };
        let missing: BTreeSet<String> = tmpl
            .undeclared_variables(false)
            .into_iter()
            .filter(|name| !defined(name))
            .collect();
        if !missing.is_empty() {
            return Err(TemplateError::Undefined(missing.into_iter().collect()));
        }
        tmpl.render(ctx)
            .map_err(|e| TemplateError::Invalid(describe(&e)))
    }
}

/// A playbook variable (any YAML value) as a template value.
pub fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(f)) => Value::from(f),
            _ => Value::from(n.to_string()),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => {
            Value::from(items.iter().map(json_to_value).collect::<Vec<_>>())
        }
        serde_json::Value::Object(map) => Value::from(
            map.iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect::<std::collections::BTreeMap<String, Value>>(),
        ),
    }
}

fn has_syntax(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_vars_and_refuses_undefined_ones() {
        let t = Templates::new();
        let ctx = minijinja::context! { data_drive => "D:", target => minijinja::context!{ name => "new-sbs" } };
        assert_eq!(
            t.render("copy {{ data_drive }}\\x on {{ target.name }}\n", &ctx)
                .unwrap(),
            "copy D:\\x on new-sbs\n"
        );
        assert_eq!(
            t.render("{{ nope }} {{ data_drive }}", &ctx),
            Err(TemplateError::Undefined(vec!["nope".into()]))
        );
        assert!(matches!(
            t.render("{{ target.missing }}", &ctx),
            Err(TemplateError::Invalid(_))
        ));
        assert!(matches!(
            t.render("{{ unclosed", &ctx),
            Err(TemplateError::Invalid(_))
        ));
    }
}
