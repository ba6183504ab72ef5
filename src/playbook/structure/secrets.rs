//! Literal secrets in the shape check: a password or passphrase must be a reference
//! (`{ env: NAME }` or `{ file: PATH }`), and an `env:` value whose name says it is secret
//! must not be written out.

use super::super::diagnostic::Diagnostic;
use super::super::source::{Node, NodeKind, Seg, Source};
use super::*;

/// Words in a variable's name that say its value is a credential: a plain value there is a
/// literal secret.
const SECRET_WORDS: &[&str] = &["PASS", "PWD", "_PW", "SECRET", "TOKEN", "CREDENTIAL", "KEY"];

/// A step's `env` entry: a secret reference is checked as one; a plain value is fine unless
/// the variable's name says it holds a credential.
pub(super) fn check_env_value(
    src: &Source,
    name: &str,
    node: &Node,
    path: &mut Vec<Seg>,
    out: &mut Vec<Diagnostic>,
) {
    match &node.kind {
        NodeKind::Map(_) => check_secret(src, node, path, name, out),
        NodeKind::Scalar(_) => {
            let upper = name.to_ascii_uppercase();
            if SECRET_WORDS.iter().any(|w| upper.contains(w)) || upper.ends_with("PW") {
                out.push(
                    Diagnostic::at(src, path, format!("`env.{name}` looks like a literal secret; secrets may only be referenced"))
                        .help(format!("write `{name}: {{ env: VARIABLE }}` or `{name}: {{ file: PATH }}`, and remove the value from this file (rename the variable if it truly is no secret)"))
                        .without_source(),
                );
            }
        }
        _ => {}
    }
}

pub(super) fn check_secret(
    src: &Source,
    node: &Node,
    path: &mut Vec<Seg>,
    key: &str,
    out: &mut Vec<Diagnostic>,
) {
    match &node.kind {
        NodeKind::Scalar(_) => out.push(
            // Do not echo the value: it may be a real password.
            Diagnostic::at(src, path, format!("`{key}` is a literal secret; secrets may only be referenced"))
                .help(format!("write `{key}: {{ env: VARIABLE }}` or `{key}: {{ file: PATH }}`, and remove the secret from this file"))
                .without_source(),
        ),
        NodeKind::Map(entries) => {
            walk_map(src, node, path, SECRET_KEYS, &format!("`{key}`"), out, &|_, _, _, _| {});
            if entries.len() != 1 && entries.iter().all(|e| SECRET_KEYS.contains(&e.key.as_str())) {
                out.push(
                    Diagnostic::at(src, path, format!("`{key}` must name exactly one of `env` or `file`"))
                        .help(format!("for example `{key}: {{ env: VARIABLE }}`")),
                );
            }
        }
        _ => {}
    }
}
