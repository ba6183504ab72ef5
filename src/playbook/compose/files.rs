//! The other files read into the playbook: paths, the size cap and the text, the parsed tree.

use std::path::{Component, Path, PathBuf};

use crate::playbook::diagnostic::Diagnostic;
use crate::playbook::source::{Node, NodeKind, Source};
use crate::playbook::{sha256_hex, MAX_PLAYBOOK_BYTES};

/// The path written in a file, resolved against that file's folder, without `x/..` pairs.
pub(super) fn resolve(base: &Path, written: &str) -> PathBuf {
    let dir = base.parent().unwrap_or(Path::new(""));
    normalize(&dir.join(crate::paths::expand_home(Path::new(written))))
}

/// A path without `.` and without `x/..` pairs: a procedure's `../scripts/a.cmd` is the same
/// file, with the same name in the plan and the same fingerprint, as a playbook's
/// `scripts/a.cmd` beside it.
pub(in crate::playbook) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Reads a file the way the playbook itself is read (size cap, UTF-8, byte order mark).
pub(super) fn read(path: &Path, what: &str) -> Result<(String, String), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read the {what}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("the {what} path is not a file"));
    }
    if meta.len() > MAX_PLAYBOOK_BYTES {
        return Err(format!(
            "the {what} is {} bytes; the limit is {MAX_PLAYBOOK_BYTES}",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the {what}: {e}"))?;
    let sha = sha256_hex(&bytes);
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "the {what} is not UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    Ok((text.trim_start_matches('\u{feff}').to_string(), sha))
}

pub(super) fn set_origin(node: &mut Node, origin: usize) {
    node.origin = origin;
    match &mut node.kind {
        NodeKind::Map(entries) => entries
            .iter_mut()
            .for_each(|e| set_origin(&mut e.value, origin)),
        NodeKind::Seq(items) => items.iter_mut().for_each(|n| set_origin(n, origin)),
        _ => {}
    }
}

/// A file's tree: its syntax error as a diagnostic, with the origin set.
pub(super) fn parse_other(
    out: &mut Source,
    path: &Path,
    text: String,
    diags: &mut Vec<Diagnostic>,
) -> Option<Node> {
    match Source::parse(path, text) {
        Ok(mut s) => {
            out.others
                .push((path.to_path_buf(), std::mem::take(&mut s.text)));
            let origin = out.others.len();
            let mut root = s.root?;
            set_origin(&mut root, origin);
            Some(root)
        }
        Err(e) => {
            let own = Source {
                path: path.to_path_buf(),
                text: s_text(path),
                root: None,
                others: Vec::new(),
            };
            let (pos, message, help) = e.explain(&own.text);
            diags.push(
                Diagnostic::at_pos(
                    &own,
                    pos,
                    String::new(),
                    format!("YAML syntax error: {message}"),
                )
                .with_help(help),
            );
            None
        }
    }
}

pub(super) fn s_text(path: &Path) -> String {
    read(path, "file").map(|(t, _)| t).unwrap_or_default()
}
