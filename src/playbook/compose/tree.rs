//! Small reads and merges of positioned YAML trees.

use crate::playbook::source::{Entry, Node, NodeKind, Pos};

pub(super) fn first_alias(node: &Node) -> Option<Pos> {
    match &node.kind {
        NodeKind::Alias => Some(node.pos),
        NodeKind::Map(entries) => entries.iter().find_map(|e| first_alias(&e.value)),
        NodeKind::Seq(items) => items.iter().find_map(first_alias),
        NodeKind::Scalar(_) => None,
    }
}

pub(super) fn scalar(node: &Node) -> Option<&str> {
    match &node.kind {
        NodeKind::Scalar(s) => Some(s),
        _ => None,
    }
}

pub(super) fn is_true(node: &Node) -> bool {
    node.plain && matches!(scalar(node), Some("true" | "True" | "TRUE"))
}

/// Short text of a value for the plan: the scalar, or its kind.
pub(super) fn shown(node: &Node) -> String {
    match &node.kind {
        NodeKind::Scalar(s) => s.clone(),
        NodeKind::Map(_) => "(a mapping)".into(),
        NodeKind::Seq(_) => "(a list)".into(),
        NodeKind::Alias => "(an alias)".into(),
    }
}

pub(super) fn entries_mut(node: &mut Node) -> Option<&mut Vec<Entry>> {
    match &mut node.kind {
        NodeKind::Map(entries) => Some(entries),
        _ => None,
    }
}

/// Puts `entry` into `entries`: replaces the entry of that key from another file, else
/// appends (a key given twice in one file stays twice, for the shape check to report).
pub(super) fn put(entries: &mut Vec<Entry>, entry: Entry) {
    match entries
        .iter()
        .position(|e| e.key == entry.key && e.value.origin != entry.value.origin)
    {
        Some(i) => entries[i] = entry,
        None => entries.push(entry),
    }
}

/// Merges a mapping name by name (`vars`, `targets`, `groups`); anything else replaces.
pub(super) fn merge_map(entries: &mut Vec<Entry>, incoming: Entry) {
    let Some(i) = entries.iter().position(|e| e.key == incoming.key) else {
        entries.push(incoming);
        return;
    };
    let both_maps = matches!(entries[i].value.kind, NodeKind::Map(_))
        && matches!(incoming.value.kind, NodeKind::Map(_));
    if !both_maps {
        entries[i] = incoming;
        return;
    }
    let NodeKind::Map(new) = incoming.value.kind else {
        return;
    };
    if let Some(old) = entries_mut(&mut entries[i].value) {
        for e in new {
            put(old, e);
        }
    }
}
