//! A customer file's procedure: read, checked, and the customer's keys merged over it.

use std::path::PathBuf;

use super::customer::CUSTOMER_KEYS;
use super::files::{parse_other, read, resolve};
use super::overrides::apply_overrides;
use super::tree::{entries_mut, first_alias, merge_map, put, scalar};
use super::{src_with, Composition, SourceFile};
use crate::playbook::diagnostic::{suggestion_or_choices, Diagnostic};
use crate::playbook::source::{Entry, Node, NodeKind, Seg, Source};

/// The merge cannot go on; the diagnostics say why.
pub(super) struct Stopped;

/// The procedure a customer file names: its tree and the file.
struct Procedure {
    root: Node,
    path: PathBuf,
    sha256: String,
}

/// Replaces the customer file's tree in `src` by its procedure's with the customer's keys
/// merged over it, then applies the customer's overrides. The procedure's bytes go into
/// `hash_input`.
pub(super) fn merge_procedure(
    src: &mut Source,
    comp: &mut Composition,
    hash_input: &mut String,
    diags: &mut Vec<Diagnostic>,
) -> Result<(), Stopped> {
    if let Some(pos) = src.root.as_ref().and_then(first_alias) {
        diags.push(
            Diagnostic::at_pos(
                src,
                pos,
                String::new(),
                "YAML aliases are not supported in a customer file",
            )
            .help("write the value out, or move shared values into `vars`"),
        );
        return Err(Stopped);
    }
    let customer = src.root.take();
    let Some(Node {
        kind: NodeKind::Map(entries),
        pos: root_pos,
        width: root_width,
        ..
    }) = customer
    else {
        return Err(Stopped);
    };
    check_customer_keys(src, &entries, diags);
    let mut proc = read_procedure(src, &entries, hash_input, diags)?;
    let Some(merged) = entries_mut(&mut proc.root) else {
        return Err(Stopped);
    };
    let proc_name = merged
        .iter()
        .position(|e| e.key == "name")
        .map(|i| merged.remove(i))
        .and_then(|e| scalar(&e.value).map(str::to_string));
    comp.procedure = Some(SourceFile {
        path: proc.path.clone(),
        name: proc_name,
        sha256: proc.sha256.clone(),
    });
    let overrides = merge_customer(merged, entries);
    let tree = Node {
        kind: NodeKind::Map(std::mem::take(merged)),
        pos: root_pos,
        width: root_width,
        plain: false,
        origin: 0,
    };
    src.root = Some(tree);
    if let Some(o) = overrides {
        apply_overrides(src, o, comp, diags);
    }
    Ok(())
}

/// The customer file's own keys: each once, no `steps`, none unknown.
fn check_customer_keys(src: &Source, entries: &[Entry], diags: &mut Vec<Diagnostic>) {
    let mut seen: Vec<&str> = Vec::new();
    for e in entries {
        let path = [Seg::Key(e.key.clone())];
        let d = if seen.contains(&e.key.as_str()) {
            Some(
                Diagnostic::at_key(
                    &src_with(src, entries),
                    &path,
                    format!("`{}` is given twice in the customer file", e.key),
                )
                .help("keep one of them"),
            )
        } else if e.key == "steps" {
            Some(Diagnostic::at_key(&src_with(src, entries), &path, "a customer file has no `steps`: they come from its procedure")
                .help("change a step for this customer under `overrides: { STEP: { estimate: 6h } }`, or leave an optional one out with `skip: true`"))
        } else if !CUSTOMER_KEYS.contains(&e.key.as_str()) {
            Some(
                Diagnostic::at_key(
                    &src_with(src, entries),
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
}

/// Reads the procedure named by the customer file's `entries` into `src`: a mapping without
/// aliases that names no other procedure.
fn read_procedure(
    src: &mut Source,
    entries: &[Entry],
    hash_input: &mut String,
    diags: &mut Vec<Diagnostic>,
) -> Result<Procedure, Stopped> {
    let proc_entry = entries.iter().find(|e| e.key == "procedure");
    let written = proc_entry
        .and_then(|e| scalar(&e.value))
        .map(str::to_string);
    let Some(written) = written.filter(|w| !w.trim().is_empty()) else {
        diags.push(
            Diagnostic::at(
                &src_with(src, entries),
                &[Seg::Key("procedure".into())],
                "`procedure` must be the path of a procedure file",
            )
            .help(
                "e.g. `procedure: ../procedures/sbs2000-to-sbs2003.yaml` (relative to this file)",
            ),
        );
        return Err(Stopped);
    };
    let proc_path = resolve(&src.path, &written);
    let (text, proc_sha) = match read(&proc_path, "procedure") {
        Ok(x) => x,
        Err(e) => {
            diags.push(
                Diagnostic::at(
                    &src_with(src, entries),
                    &[Seg::Key("procedure".into())],
                    format!("{e} ({})", proc_path.display()),
                )
                .help("the procedure's path is relative to the customer file's folder"),
            );
            return Err(Stopped);
        }
    };
    hash_input.push_str(&format!("procedure {proc_sha}\n"));
    let Some(proc_root) = parse_other(src, &proc_path, text, diags) else {
        if diags.is_empty() {
            diags.push(Diagnostic::whole_file(&proc_path, "the procedure is empty"));
        }
        return Err(Stopped);
    };
    let proc_origin = src.others.len();
    check_procedure(src, &proc_root, proc_origin, diags)?;
    Ok(Procedure {
        root: proc_root,
        path: proc_path,
        sha256: proc_sha,
    })
}

/// A procedure is a mapping without aliases, and names no procedure of its own.
fn check_procedure(
    src: &Source,
    proc_root: &Node,
    proc_origin: usize,
    diags: &mut Vec<Diagnostic>,
) -> Result<(), Stopped> {
    if let Some(pos) = first_alias(proc_root) {
        diags.push(
            Diagnostic::new_in(
                src,
                proc_origin,
                pos,
                1,
                String::new(),
                "YAML aliases are not supported in a procedure".into(),
            )
            .help("write the value out, or move shared values into `vars`"),
        );
        return Err(Stopped);
    }
    let NodeKind::Map(merged) = &proc_root.kind else {
        diags.push(
            Diagnostic::new_in(
                src,
                proc_origin,
                proc_root.pos,
                1,
                String::new(),
                "a procedure must be a mapping of keys".into(),
            )
            .help("a procedure is a playbook: `name:`, `vars:` and `steps:`"),
        );
        return Err(Stopped);
    };
    if let Some(e) = merged.iter().find(|e| e.key == "procedure") {
        diags.push(
            Diagnostic::new_in(
                src,
                proc_origin,
                e.key_pos,
                e.key.len(),
                "procedure".into(),
                "a procedure cannot name another procedure".into(),
            )
            .help("a customer file names one procedure; the procedure holds the steps"),
        );
        return Err(Stopped);
    }
    Ok(())
}

/// Puts the customer's keys over the procedure's (`vars`, `targets` and `groups` name by
/// name); returns the customer's `overrides`, if any.
fn merge_customer(merged: &mut Vec<Entry>, entries: Vec<Entry>) -> Option<Entry> {
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
    overrides
}
