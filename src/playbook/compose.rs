//! One procedure, many customers: a customer file names a shared procedure (`procedure:`) and
//! supplies what differs (window, targets, vars, per-step `overrides`); `--var` and `--vars`
//! add one-off values. The files are merged here into one positioned tree whose every node
//! still knows the file it was written in, so that all later checks point at the right file,
//! line and column.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::diagnostic::{suggestion_or_choices, Diagnostic};
use super::source::{Entry, Node, NodeKind, Pos, Seg, Source};
use super::{sha256_hex, MAX_PLAYBOOK_BYTES};

/// A customer file (format v1): a shared procedure and what differs for this customer.
/// Every key but `procedure` and `overrides` means what it means in a playbook and wins over
/// the procedure's: `window`, `name`, `description`, `on_failure` and `notify` replace it,
/// `vars`, `targets` and `groups` are merged name by name.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCustomer {
    /// This customer's cutover, e.g. "Acme SBS 2000 to SBS 2003 cutover". The journal belongs
    /// to it: a changed procedure does not reset the customer's progress.
    pub name: String,
    /// The shared procedure (a playbook file whose steps are used), relative to this file.
    pub procedure: String,
    /// Free text for the review document (default: the procedure's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The customer's business hours (replaces the procedure's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<super::raw::RawWindow>,
    /// Template variables; each wins over the procedure's variable of that name.
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// The customer's machines; each replaces the procedure's target of that name.
    #[serde(default)]
    pub targets: BTreeMap<String, super::raw::RawTarget>,
    /// Named lists of targets; each replaces the procedure's group of that name.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// Per step id: a customer's own estimate or timeout, or `skip: true` for a step the
    /// procedure marks `optional: true`.
    #[serde(default)]
    pub overrides: BTreeMap<String, RawOverride>,
    /// What `apply` does after a failed step (replaces the procedure's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<super::raw::OnFailure>,
    /// Where to tell people what happens (replaces the procedure's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<super::raw::RawSink>,
    /// Where this customer's journal is (replaces the procedure's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// What a customer changes about one step of the procedure.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOverride {
    /// This customer's estimate (e.g. 6h for a larger share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<String>,
    /// This customer's timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Leave the step out; only for steps marked `optional: true` in the procedure.
    #[serde(default)]
    pub skip: bool,
}

pub const CUSTOMER_KEYS: &[&str] = &[
    "name",
    "procedure",
    "description",
    "window",
    "vars",
    "targets",
    "groups",
    "overrides",
    "on_failure",
    "notify",
    "state",
];
pub const OVERRIDE_KEYS: &[&str] = &["estimate", "timeout", "skip"];

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

/// Where the merged playbook's parts came from, for the plan and the review.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Composition {
    /// The procedure, when the file is a customer file.
    pub procedure: Option<SourceFile>,
    /// `--vars` files, in order.
    pub vars_files: Vec<SourceFile>,
    /// Per-step values the customer file sets.
    pub overrides: Vec<Override>,
    /// Optional steps the customer leaves out.
    pub skipped: Vec<Skipped>,
    /// Variables given on the command line (`--var`, `--vars`).
    pub given: Vec<GivenVar>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFile {
    pub path: PathBuf,
    /// The procedure's `name`, if it has one.
    pub name: Option<String>,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Override {
    pub step: String,
    pub key: String,
    pub value: String,
    /// What the procedure says, if anything.
    pub procedure_value: Option<String>,
    /// `file:line:column` of the customer's value.
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub step: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GivenVar {
    pub name: String,
    pub value: String,
    /// `--var` or the `--vars` file's path.
    pub from: String,
}

pub(super) struct Composed {
    pub src: Source,
    pub sha256: String,
    pub composition: Option<Composition>,
    /// Problems found while merging that do not stop the later checks (unknown keys of the
    /// customer file, wrong overrides): reported together with theirs.
    pub diags: Vec<Diagnostic>,
}

/// The path written in a file, resolved against that file's folder, without `x/..` pairs.
fn resolve(base: &Path, written: &str) -> PathBuf {
    let dir = base.parent().unwrap_or(Path::new(""));
    normalize(&dir.join(crate::paths::expand_home(Path::new(written))))
}

/// A path without `.` and without `x/..` pairs: a procedure's `../scripts/a.cmd` is the same
/// file, with the same name in the plan and the same fingerprint, as a playbook's
/// `scripts/a.cmd` beside it.
pub(super) fn normalize(path: &Path) -> PathBuf {
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
fn read(path: &Path, what: &str) -> Result<(String, String), String> {
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

fn set_origin(node: &mut Node, origin: usize) {
    node.origin = origin;
    match &mut node.kind {
        NodeKind::Map(entries) => entries
            .iter_mut()
            .for_each(|e| set_origin(&mut e.value, origin)),
        NodeKind::Seq(items) => items.iter_mut().for_each(|n| set_origin(n, origin)),
        _ => {}
    }
}

fn first_alias(node: &Node) -> Option<Pos> {
    match &node.kind {
        NodeKind::Alias => Some(node.pos),
        NodeKind::Map(entries) => entries.iter().find_map(|e| first_alias(&e.value)),
        NodeKind::Seq(items) => items.iter().find_map(first_alias),
        NodeKind::Scalar(_) => None,
    }
}

fn scalar(node: &Node) -> Option<&str> {
    match &node.kind {
        NodeKind::Scalar(s) => Some(s),
        _ => None,
    }
}

fn is_true(node: &Node) -> bool {
    node.plain && matches!(scalar(node), Some("true" | "True" | "TRUE"))
}

/// Short text of a value for the plan: the scalar, or its kind.
fn shown(node: &Node) -> String {
    match &node.kind {
        NodeKind::Scalar(s) => s.clone(),
        NodeKind::Map(_) => "(a mapping)".into(),
        NodeKind::Seq(_) => "(a list)".into(),
        NodeKind::Alias => "(an alias)".into(),
    }
}

/// A file's tree: its syntax error as a diagnostic, with the origin set.
fn parse_other(
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

fn s_text(path: &Path) -> String {
    read(path, "file").map(|(t, _)| t).unwrap_or_default()
}

fn entries_mut(node: &mut Node) -> Option<&mut Vec<Entry>> {
    match &mut node.kind {
        NodeKind::Map(entries) => Some(entries),
        _ => None,
    }
}

/// Puts `entry` into `entries`: replaces the entry of that key from another file, else
/// appends (a key given twice in one file stays twice, for the shape check to report).
fn put(entries: &mut Vec<Entry>, entry: Entry) {
    match entries
        .iter()
        .position(|e| e.key == entry.key && e.value.origin != entry.value.origin)
    {
        Some(i) => entries[i] = entry,
        None => entries.push(entry),
    }
}

/// Merges a mapping name by name (`vars`, `targets`, `groups`); anything else replaces.
fn merge_map(entries: &mut Vec<Entry>, incoming: Entry) {
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

/// Sets a top-level variable, over whatever set it before.
fn add_var(src: &mut Source, entry: Entry) {
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

fn apply_overrides(
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
