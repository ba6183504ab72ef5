//! One procedure, many customers: a customer file names a shared procedure (`procedure:`) and
//! supplies what differs (window, targets, vars, per-step `overrides`); `--var` and `--vars`
//! add one-off values. The files are merged here into one positioned tree whose every node
//! still knows the file it was written in, so that all later checks point at the right file,
//! line and column.

use std::path::PathBuf;

use super::diagnostic::{suggestion_or_choices, Diagnostic};
use super::sha256_hex;
use super::source::{Entry, Node, NodeKind, Pos, Seg, Source};

mod composition;
mod customer;
mod files;
mod overrides;
mod tree;
mod vars;

pub use composition::{Composition, GivenVar, Override, Skipped, SourceFile};
pub use customer::{RawCustomer, RawOverride, CUSTOMER_KEYS, OVERRIDE_KEYS};
pub(super) use files::normalize;
use files::{parse_other, read, resolve};
use overrides::apply_overrides;
use tree::{entries_mut, first_alias, merge_map, put, scalar, shown};
use vars::add_var;
pub use vars::GivenVars;

pub(super) struct Composed {
    pub src: Source,
    pub sha256: String,
    pub composition: Option<Composition>,
    /// Problems found while merging that do not stop the later checks (unknown keys of the
    /// customer file, wrong overrides): reported together with theirs.
    pub diags: Vec<Diagnostic>,
}

fn at_text(src: &Source, origin: usize, pos: Pos) -> String {
    format!("{}:{}:{}", src.file_of(origin).display(), pos.line, pos.col)
}

/// Merges the customer file with its procedure and the given variables. A plain playbook
/// without given variables comes back as it is.
pub(super) fn compose(
    mut src: Source,
    sha256: String,
    given: &GivenVars,
) -> Result<Composed, Vec<Diagnostic>> {
    let is_customer = matches!(&src.root, Some(Node { kind: NodeKind::Map(e), .. })
        if e.iter().any(|e| e.key == "procedure"));
    if !is_customer && given.is_empty() {
        return Ok(Composed {
            src,
            sha256,
            composition: None,
            diags: Vec::new(),
        });
    }
    let mut diags = Vec::new();
    let mut comp = Composition::default();
    // Every file's bytes (and every --var) go into one hash: `apply --plan` covers them all.
    let mut hash_input = format!("playbook {sha256}\n");
    if is_customer {
        if let Some(pos) = src.root.as_ref().and_then(first_alias) {
            diags.push(
                Diagnostic::at_pos(
                    &src,
                    pos,
                    String::new(),
                    "YAML aliases are not supported in a customer file",
                )
                .help("write the value out, or move shared values into `vars`"),
            );
            return Err(diags);
        }
        let customer = src.root.take();
        let Some(Node {
            kind: NodeKind::Map(entries),
            pos: root_pos,
            width: root_width,
            ..
        }) = customer
        else {
            return Err(diags);
        };
        // The customer file's own keys.
        let mut seen: Vec<&str> = Vec::new();
        for e in &entries {
            let path = [Seg::Key(e.key.clone())];
            let d = if seen.contains(&e.key.as_str()) {
                Some(
                    Diagnostic::at_key(
                        &src_with(&src, &entries),
                        &path,
                        format!("`{}` is given twice in the customer file", e.key),
                    )
                    .help("keep one of them"),
                )
            } else if e.key == "steps" {
                Some(Diagnostic::at_key(&src_with(&src, &entries), &path, "a customer file has no `steps`: they come from its procedure")
                    .help("change a step for this customer under `overrides: { STEP: { estimate: 6h } }`, or leave an optional one out with `skip: true`"))
            } else if !CUSTOMER_KEYS.contains(&e.key.as_str()) {
                Some(
                    Diagnostic::at_key(
                        &src_with(&src, &entries),
                        &path,
                        format!("unknown key `{}` in the customer file", e.key),
                    )
                    .help(suggestion_or_choices(&e.key, CUSTOMER_KEYS.iter().copied())),
                )
            } else {
                None
            };
            diags.extend(d);
            seen.push(&e.key);
        }
        let proc_entry = entries.iter().find(|e| e.key == "procedure");
        let written = proc_entry
            .and_then(|e| scalar(&e.value))
            .map(str::to_string);
        let Some(written) = written.filter(|w| !w.trim().is_empty()) else {
            diags.push(
                Diagnostic::at(&src_with(&src, &entries), &[Seg::Key("procedure".into())], "`procedure` must be the path of a procedure file")
                    .help("e.g. `procedure: ../procedures/sbs2000-to-sbs2003.yaml` (relative to this file)"),
            );
            return Err(diags);
        };
        let proc_path = resolve(&src.path, &written);
        let (text, proc_sha) = match read(&proc_path, "procedure") {
            Ok(x) => x,
            Err(e) => {
                diags.push(
                    Diagnostic::at(
                        &src_with(&src, &entries),
                        &[Seg::Key("procedure".into())],
                        format!("{e} ({})", proc_path.display()),
                    )
                    .help("the procedure's path is relative to the customer file's folder"),
                );
                return Err(diags);
            }
        };
        hash_input.push_str(&format!("procedure {proc_sha}\n"));
        let Some(mut proc_root) = parse_other(&mut src, &proc_path, text, &mut diags) else {
            if diags.is_empty() {
                diags.push(Diagnostic::whole_file(&proc_path, "the procedure is empty"));
            }
            return Err(diags);
        };
        let proc_origin = src.others.len();
        if let Some(pos) = first_alias(&proc_root) {
            diags.push(
                Diagnostic::new_in(
                    &src,
                    proc_origin,
                    pos,
                    1,
                    String::new(),
                    "YAML aliases are not supported in a procedure".into(),
                )
                .help("write the value out, or move shared values into `vars`"),
            );
            return Err(diags);
        }
        let Some(merged) = entries_mut(&mut proc_root) else {
            diags.push(
                Diagnostic::new_in(
                    &src,
                    proc_origin,
                    proc_root.pos,
                    1,
                    String::new(),
                    "a procedure must be a mapping of keys".into(),
                )
                .help("a procedure is a playbook: `name:`, `vars:` and `steps:`"),
            );
            return Err(diags);
        };
        if let Some(e) = merged.iter().find(|e| e.key == "procedure") {
            diags.push(
                Diagnostic::new_in(
                    &src,
                    proc_origin,
                    e.key_pos,
                    e.key.len(),
                    "procedure".into(),
                    "a procedure cannot name another procedure".into(),
                )
                .help("a customer file names one procedure; the procedure holds the steps"),
            );
            return Err(diags);
        }
        let proc_name = merged
            .iter()
            .position(|e| e.key == "name")
            .map(|i| merged.remove(i))
            .and_then(|e| scalar(&e.value).map(str::to_string));
        comp.procedure = Some(SourceFile {
            path: proc_path.clone(),
            name: proc_name,
            sha256: proc_sha,
        });
        let mut overrides = None;
        for e in entries {
            match e.key.as_str() {
                k if !CUSTOMER_KEYS.contains(&k) => {}
                "procedure" => {}
                "overrides" => overrides = Some(e),
                "vars" | "targets" | "groups" => merge_map(merged, e),
                _ => put(merged, e),
            }
        }
        let tree = Node {
            kind: NodeKind::Map(std::mem::take(merged)),
            pos: root_pos,
            width: root_width,
            plain: false,
            origin: 0,
        };
        src.root = Some(tree);
        if let Some(o) = overrides {
            apply_overrides(&mut src, o, proc_origin, &mut comp, &mut diags);
        }
    }
    for file in &given.files {
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
        let Some(root) = parse_other(&mut src, file, text, &mut diags) else {
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
                    add_var(&mut src, e);
                }
            }
            _ => diags.push(
                Diagnostic::new_in(
                    &src,
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
    if !given.vars.is_empty() {
        let text: String = given.vars.iter().map(|v| format!("--var {v}\n")).collect();
        src.others.push((PathBuf::from("command line"), text));
        let origin = src.others.len();
        for (i, v) in given.vars.iter().enumerate() {
            hash_input.push_str(&format!("var {v}\n"));
            let line = i + 1;
            let Some((name, value)) = v.split_once('=') else {
                diags.push(
                    Diagnostic::new_in(
                        &src,
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
                &mut src,
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
    Ok(Composed {
        src,
        sha256: sha256_hex(hash_input.as_bytes()),
        composition: Some(comp),
        diags,
    })
}

/// A Source over the customer's own entries, for positions while the tree is taken apart.
fn src_with(src: &Source, entries: &[Entry]) -> Source {
    Source {
        path: src.path.clone(),
        text: src.text.clone(),
        root: Some(Node {
            kind: NodeKind::Map(
                entries
                    .iter()
                    .map(|e| Entry {
                        key: e.key.clone(),
                        key_pos: e.key_pos,
                        value: shallow(&e.value),
                    })
                    .collect(),
            ),
            pos: Pos { line: 1, col: 1 },
            width: 1,
            plain: false,
            origin: 0,
        }),
        others: Vec::new(),
    }
}

/// A node without its children (scalars keep their text), enough to locate it.
fn shallow(n: &Node) -> Node {
    Node {
        kind: match &n.kind {
            NodeKind::Scalar(s) => NodeKind::Scalar(s.clone()),
            NodeKind::Map(_) => NodeKind::Map(Vec::new()),
            NodeKind::Seq(_) => NodeKind::Seq(Vec::new()),
            NodeKind::Alias => NodeKind::Alias,
        },
        pos: n.pos,
        width: n.width,
        plain: n.plain,
        origin: n.origin,
    }
}
