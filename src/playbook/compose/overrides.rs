//! A customer's per-step overrides (estimate, timeout, skip) applied to the procedure's steps.

use super::tree::{is_true, scalar, shown};
use super::{at_text, Composition, Override, Skipped, OVERRIDE_KEYS};
use crate::playbook::diagnostic::{suggestion_or_choices, Diagnostic};
use crate::playbook::source::{Entry, Node, NodeKind, Seg, Source};

/// Applies the customer's `overrides` to the steps of the merged tree in `src`: estimates and
/// timeouts replace the procedure's, skipped optional steps are taken out. Each is recorded in
/// `comp`; wrong ones become diagnostics.
pub(super) fn apply_overrides(
    src: &mut Source,
    overrides: Entry,
    comp: &mut Composition,
    diags: &mut Vec<Diagnostic>,
) {
    let NodeKind::Map(per_step) = overrides.value.kind else {
        if !matches!(&overrides.value.kind, NodeKind::Scalar(s) if s.is_empty()) {
            diags.push(
                Diagnostic::new_in(
                    src,
                    0,
                    overrides.value.pos,
                    overrides.value.width,
                    "overrides".into(),
                    "`overrides` must be a mapping of step ids".into(),
                )
                .help("e.g. `overrides: { copy-company-first-pass: { estimate: 6h } }`"),
            );
        }
        return;
    };
    let ids = step_ids(src);
    let mut skip = Vec::new();
    for o in per_step {
        override_step(src, o, &ids, comp, diags, &mut skip);
    }
    remove_steps(src, &skip);
}

/// One step's override: the step must exist and the override be a mapping of `skip`,
/// `estimate` or `timeout`; the steps to skip are added to `skip`.
fn override_step(
    src: &mut Source,
    o: Entry,
    ids: &[String],
    comp: &mut Composition,
    diags: &mut Vec<Diagnostic>,
    skip: &mut Vec<usize>,
) {
    let key_path = format!("overrides.{}", o.key);
    let Some(index) = ids.iter().position(|id| *id == o.key) else {
        diags.push(
            Diagnostic::new_in(
                src,
                0,
                o.key_pos,
                o.key.chars().count().max(1),
                key_path,
                format!("the procedure has no step `{}`", o.key),
            )
            .help(suggestion_or_choices(
                &o.key,
                ids.iter().map(String::as_str),
            )),
        );
        return;
    };
    let NodeKind::Map(changes) = o.value.kind else {
        diags.push(
            Diagnostic::new_in(
                src,
                0,
                o.value.pos,
                o.value.width,
                key_path,
                format!("the override of `{}` must be a mapping", o.key),
            )
            .help("e.g. `{ estimate: 6h }` or `{ skip: true }`"),
        );
        return;
    };
    for c in changes {
        let here = at_text(src, 0, c.value.pos);
        match c.key.as_str() {
            "skip" => {
                if skip_wanted(src, &o.key, index, &c.value, diags) {
                    skip.push(index);
                    comp.skipped.push(Skipped {
                        step: o.key.clone(),
                        at: here,
                    });
                }
            }
            "estimate" | "timeout" => {
                let (key, value) = (c.key.clone(), shown(&c.value));
                if let Some(before) = set_value(src, index, c) {
                    comp.overrides.push(Override {
                        step: o.key.clone(),
                        key,
                        value,
                        procedure_value: before,
                        at: here,
                    });
                }
            }
            other => diags.push(
                Diagnostic::new_in(
                    src,
                    0,
                    c.key_pos,
                    other.chars().count().max(1),
                    format!("{key_path}.{other}"),
                    format!("unknown key `{other}` in an override"),
                )
                .help(suggestion_or_choices(other, OVERRIDE_KEYS.iter().copied())),
            ),
        }
    }
}

/// The id of each step of the merged tree, in order ("" where a step has none).
fn step_ids(src: &Source) -> Vec<String> {
    match src.node(&[Seg::Key("steps".into())]).map(|n| &n.kind) {
        Some(NodeKind::Seq(items)) => items
            .iter()
            .map(|s| match &s.kind {
                NodeKind::Map(e) => e
                    .iter()
                    .find(|e| e.key == "id")
                    .and_then(|e| scalar(&e.value))
                    .unwrap_or("")
                    .to_string(),
                _ => String::new(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `skip: value` on step `id` (at `index`) takes the step out: only `true` on a step
/// the procedure marks `optional: true`. Anything but true or false, or true on a step that is
/// not optional, is a diagnostic.
fn skip_wanted(
    src: &Source,
    id: &str,
    index: usize,
    value: &Node,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let key_path = format!("overrides.{id}");
    let step_path = [Seg::Key("steps".into()), Seg::Index(index)];
    let optional = src
        .node(&[
            step_path[0].clone(),
            step_path[1].clone(),
            Seg::Key("optional".into()),
        ])
        .is_some_and(is_true);
    let wanted = is_true(value);
    let is_false = value.plain && matches!(scalar(value), Some("false" | "False" | "FALSE"));
    if !wanted && !is_false {
        diags.push(
            Diagnostic::new_in(
                src,
                0,
                value.pos,
                value.width,
                format!("{key_path}.skip"),
                format!("`{}` is not true or false", shown(value)),
            )
            .help("write `skip: true` or `skip: false`"),
        );
        return false;
    }
    if wanted && !optional {
        let (o2, pos, _) = src.locate_origin(&[
            step_path[0].clone(),
            step_path[1].clone(),
            Seg::Key("id".into()),
        ]);
        diags.push(
            Diagnostic::new_in(src, 0, value.pos, value.width, format!("{key_path}.skip"), format!("step `{id}` is not optional in the procedure"))
                .help(format!("only steps marked `optional: true` in the procedure may be skipped; `{id}` is at {}", at_text(src, o2, pos))),
        );
        return false;
    }
    wanted
}

/// Puts `change` (an estimate or a timeout) on the step at `index`, over the procedure's
/// value; returns what the procedure said (`Some(None)`: nothing), or None when there is no
/// such step.
fn set_value(src: &mut Source, index: usize, change: Entry) -> Option<Option<String>> {
    let NodeKind::Map(step) = steps_mut(src)?.get_mut(index).map(|n| &mut n.kind)? else {
        return None;
    };
    let before = step
        .iter()
        .find(|e| e.key == change.key)
        .map(|e| shown(&e.value));
    match step.iter().position(|e| e.key == change.key) {
        Some(i) => step[i] = change,
        None => step.push(change),
    }
    Some(before)
}

/// Takes the steps at the `skip` indexes out of the merged tree.
fn remove_steps(src: &mut Source, skip: &[usize]) {
    if skip.is_empty() {
        return;
    }
    if let Some(items) = steps_mut(src) {
        let mut i = 0;
        items.retain(|_| {
            let keep = !skip.contains(&i);
            i += 1;
            keep
        });
    }
}

/// The merged tree's list of steps.
fn steps_mut(src: &mut Source) -> Option<&mut Vec<Node>> {
    let steps = src.root.as_mut().and_then(|r| match &mut r.kind {
        NodeKind::Map(top) => top.iter_mut().find(|e| e.key == "steps"),
        _ => None,
    })?;
    match &mut steps.value.kind {
        NodeKind::Seq(items) => Some(items),
        _ => None,
    }
}
