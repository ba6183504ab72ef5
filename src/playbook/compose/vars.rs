//! Variables given on the command line, and setting one over the playbook's.

use std::path::PathBuf;

use super::files::{parse_other, read};
use super::tree::shown;
use super::{Composition, GivenVar, SourceFile};
use crate::playbook::diagnostic::Diagnostic;
use crate::playbook::source::{Entry, Node, NodeKind, Pos, Source};

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

/// Reads each `--vars` file into `src` and sets its variables; their bytes go into `hash_input`.
pub(super) fn add_vars_files(
    src: &mut Source,
    files: &[PathBuf],
    comp: &mut Composition,
    hash_input: &mut String,
    diags: &mut Vec<Diagnostic>,
) {
    for file in files {
        let (text, sha) = match read(file, "vars file") {
            Ok(x) => x,
            Err(e) => {
                diags.push(
                    Diagnostic::whole_file(file, e)
                        .help("`--vars FILE` takes a YAML mapping of variable names to values"),
                );
                continue;
            }
        };
        hash_input.push_str(&format!("vars {sha}\n"));
        comp.vars_files.push(SourceFile {
            path: file.clone(),
            name: None,
            sha256: sha,
        });
        let Some(root) = parse_other(src, file, text, diags) else {
            continue;
        };
        let origin = src.others.len();
        match root.kind {
            NodeKind::Map(entries) => {
                for e in entries {
                    comp.given.push(GivenVar {
                        name: e.key.clone(),
                        value: shown(&e.value),
                        from: file.display().to_string(),
                    });
                    add_var(src, e);
                }
            }
            _ => diags.push(
                Diagnostic::new_in(
                    src,
                    origin,
                    root.pos,
                    root.width,
                    String::new(),
                    "a vars file must be a mapping of variable names to values".into(),
                )
                .help("e.g. `share_path: D:\\Company`"),
            ),
        }
    }
}

/// Sets each `--var NAME=VALUE` (text), positioned on a "command line" file of their own.
pub(super) fn add_command_line_vars(
    src: &mut Source,
    vars: &[String],
    comp: &mut Composition,
    hash_input: &mut String,
    diags: &mut Vec<Diagnostic>,
) {
    if vars.is_empty() {
        return;
    }
    let text: String = vars.iter().map(|v| format!("--var {v}\n")).collect();
    src.others.push((PathBuf::from("command line"), text));
    let origin = src.others.len();
    for (i, v) in vars.iter().enumerate() {
        hash_input.push_str(&format!("var {v}\n"));
        let line = i + 1;
        let Some((name, value)) = v.split_once('=') else {
            diags.push(
                Diagnostic::new_in(
                    src,
                    origin,
                    Pos { line, col: 7 },
                    v.chars().count(),
                    String::new(),
                    format!("`--var {v}` has no `=`"),
                )
                .help("write `--var NAME=VALUE`"),
            );
            continue;
        };
        let name = name.trim().to_string();
        comp.given.push(GivenVar {
            name: name.clone(),
            value: value.to_string(),
            from: "--var".into(),
        });
        let col = 7 + v[..v.len() - value.len()].chars().count();
        add_var(
            src,
            Entry {
                key: name,
                key_pos: Pos { line, col: 7 },
                value: Node {
                    kind: NodeKind::Scalar(value.to_string()),
                    pos: Pos { line, col },
                    width: value.chars().count().max(1),
                    plain: false,
                    origin,
                },
            },
        );
    }
}
