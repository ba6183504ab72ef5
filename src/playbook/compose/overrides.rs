//! A customer's per-step overrides (estimate, timeout, skip) applied to the procedure's steps.

use super::tree::{is_true, scalar, shown};
use super::{at_text, Composition, Override, Skipped, OVERRIDE_KEYS};
use crate::playbook::diagnostic::{suggestion_or_choices, Diagnostic};
use crate::playbook::source::{Entry, NodeKind, Seg, Source};

pub(super) fn apply_overrides(
    src: &mut Source,
    overrides: Entry,
    proc_origin: usize,
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
    let ids: Vec<String> = match src.node(&[Seg::Key("steps".into())]).map(|n| &n.kind) {
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
    };
    let mut skip = Vec::new();
    for o in per_step {
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
            continue;
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
            continue;
        };
        let step_path = [Seg::Key("steps".into()), Seg::Index(index)];
        for c in changes {
            let here = at_text(src, 0, c.value.pos);
            match c.key.as_str() {
                "skip" => {
                    let optional = src
                        .node(&[
                            step_path[0].clone(),
                            step_path[1].clone(),
                            Seg::Key("optional".into()),
                        ])
                        .is_some_and(is_true);
                    let wanted = is_true(&c.value);
                    let is_false = c.value.plain
                        && matches!(scalar(&c.value), Some("false" | "False" | "FALSE"));
                    if !wanted && !is_false {
                        diags.push(
                            Diagnostic::new_in(
                                src,
                                0,
                                c.value.pos,
                                c.value.width,
                                format!("{key_path}.skip"),
                                format!("`{}` is not true or false", shown(&c.value)),
                            )
                            .help("write `skip: true` or `skip: false`"),
                        );
                    } else if wanted && !optional {
                        let (o2, pos, _) = src.locate_origin(&[
                            step_path[0].clone(),
                            step_path[1].clone(),
                            Seg::Key("id".into()),
                        ]);
                        diags.push(
                            Diagnostic::new_in(src, 0, c.value.pos, c.value.width, format!("{key_path}.skip"), format!("step `{}` is not optional in the procedure", o.key))
                                .help(format!("only steps marked `optional: true` in the procedure may be skipped; `{}` is at {}", o.key, at_text(src, o2, pos))),
                        );
                    } else if wanted {
                        skip.push(index);
                        comp.skipped.push(Skipped {
                            step: o.key.clone(),
                            at: here,
                        });
                    }
                }
                "estimate" | "timeout" => {
                    let Some(NodeKind::Map(step)) = src
                        .root
                        .as_mut()
                        .and_then(|r| match &mut r.kind {
                            NodeKind::Map(top) => top.iter_mut().find(|e| e.key == "steps"),
                            _ => None,
                        })
                        .and_then(|e| match &mut e.value.kind {
                            NodeKind::Seq(items) => items.get_mut(index),
                            _ => None,
                        })
                        .map(|n| &mut n.kind)
                    else {
                        continue;
                    };
                    let before = step.iter().find(|e| e.key == c.key).map(|e| {
                        let _ = proc_origin;
                        shown(&e.value)
                    });
                    comp.overrides.push(Override {
                        step: o.key.clone(),
                        key: c.key.clone(),
                        value: shown(&c.value),
                        procedure_value: before,
                        at: here,
                    });
                    match step.iter().position(|e| e.key == c.key) {
                        Some(i) => step[i] = c,
                        None => step.push(c),
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
    if skip.is_empty() {
        return;
    }
    if let Some(NodeKind::Seq(items)) = src
        .root
        .as_mut()
        .and_then(|r| match &mut r.kind {
            NodeKind::Map(top) => top.iter_mut().find(|e| e.key == "steps"),
            _ => None,
        })
        .map(|e| &mut e.value.kind)
    {
        let mut i = 0;
        items.retain(|_| {
            let keep = !skip.contains(&i);
            i += 1;
            keep
        });
    }
}
