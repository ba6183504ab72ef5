//! One procedure, many customers: a customer file names a shared procedure (`procedure:`) and
//! supplies what differs (window, targets, vars, per-step `overrides`); `--var` and `--vars`
//! add one-off values. The files are merged here into one positioned tree whose every node
//! still knows the file it was written in, so that all later checks point at the right file,
//! line and column.

use super::diagnostic::Diagnostic;
use super::sha256_hex;
use super::source::{Entry, Node, NodeKind, Pos, Source};

mod composition;
mod customer;
mod files;
mod overrides;
mod procedure;
mod tree;
mod vars;

pub use composition::{Composition, GivenVar, Override, Skipped, SourceFile};
pub use customer::{RawCustomer, RawOverride, CUSTOMER_KEYS, OVERRIDE_KEYS};
pub(super) use files::normalize;
use procedure::merge_procedure;
pub use vars::GivenVars;
use vars::{add_command_line_vars, add_vars_files};

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
    if is_customer && merge_procedure(&mut src, &mut comp, &mut hash_input, &mut diags).is_err() {
        return Err(diags);
    }
    add_vars_files(
        &mut src,
        &given.files,
        &mut comp,
        &mut hash_input,
        &mut diags,
    );
    add_command_line_vars(
        &mut src,
        &given.vars,
        &mut comp,
        &mut hash_input,
        &mut diags,
    );
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
