//! Variables given on the command line, and setting one over the playbook's.

use std::path::PathBuf;

use crate::playbook::source::{Entry, Node, NodeKind, Source};

/// One-off variables from the command line: `--vars FILE` (YAML mappings, in order), then
/// `--var NAME=VALUE` (text), each winning over what came before.
#[derive(Debug, Clone, Default)]
pub struct GivenVars {
    pub files: Vec<PathBuf>,
    pub vars: Vec<String>,
}

impl GivenVars {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.vars.is_empty()
    }
}

/// Sets a top-level variable, over whatever set it before.
pub(super) fn add_var(src: &mut Source, entry: Entry) {
    let Some(Node {
        kind: NodeKind::Map(top),
        pos,
        ..
    }) = &mut src.root
    else {
        return;
    };
    let origin = entry.value.origin;
    let at = *pos;
    let i = match top.iter().position(|e| e.key == "vars") {
        Some(i) => i,
        None => {
            top.push(Entry {
                key: "vars".into(),
                key_pos: at,
                value: Node {
                    kind: NodeKind::Map(Vec::new()),
                    pos: at,
                    width: 1,
                    plain: false,
                    origin,
                },
            });
            top.len() - 1
        }
    };
    let vars = &mut top[i].value;
    // `vars:` written empty reads as an empty mapping.
    if matches!(&vars.kind, NodeKind::Scalar(s) if s.is_empty() && vars.plain) {
        vars.kind = NodeKind::Map(Vec::new());
    }
    if let NodeKind::Map(entries) = &mut vars.kind {
        match entries.iter().position(|e| e.key == entry.key) {
            Some(j) => entries[j] = entry,
            None => entries.push(entry),
        }
    }
}
