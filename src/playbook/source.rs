//! The playbook's text and a positioned tree of it, so that every error can point at a line.
//!
//! serde gives us typed values but no positions once parsing succeeded; this tree, built from
//! the YAML event stream, answers "where is `steps[3].on`?" for every later check. Aliases
//! are kept as aliases (never expanded), so an alias bomb costs nothing here.

use std::path::{Path, PathBuf};

use saphyr_parser::{Event, Parser};

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug)]
pub enum NodeKind {
    Map(Vec<Entry>),
    Seq(Vec<Node>),
    Scalar(String),
    Alias,
}

#[derive(Debug)]
pub struct Node {
    pub kind: NodeKind,
    pub pos: Pos,
    /// Width of the node's first line, for the caret under it.
    pub width: usize,
    /// A scalar written without quotes (YAML reads `yes`, `12` or `true` by their look only
    /// then); false for quoted scalars and for everything else.
    pub plain: bool,
    /// Which file the node was written in: 0 for the source's own file, `n` for
    /// `Source::others[n - 1]` (a customer file's procedure, a vars file, the command line).
    pub origin: usize,
}

#[derive(Debug)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// One step of a path into the tree: `steps[3].on` is `[Key("steps"), Index(3), Key("on")]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Renders a path the way users read it: `steps[3].on`, `targets.old-sbs.host`.
pub fn path_text(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The playbook file: its name as the user gave it, its text, and the tree.
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    pub root: Option<Node>,
    /// The other files a composed tree took nodes from (see [`Node::origin`]): path and text.
    pub others: Vec<(PathBuf, String)>,
}

/// A syntax error found while building the tree.
#[derive(Debug)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Column (1-based) where a line's content starts, counting a sequence dash as indentation:
/// for `  - id: a` that is the `i` of `id`, where the step's keys must line up.
fn key_column(line: &str) -> usize {
    let indent = line.len() - line.trim_start_matches(' ').len();
    let mut rest = &line[indent..];
    let mut col = indent + 1;
    while let Some(r) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("-\t")) {
        let pad = r.len() - r.trim_start_matches(' ').len();
        col += 2 + pad;
        rest = &r[pad..];
    }
    col
}

/// Whether a line is empty or only a comment.
fn is_blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

impl SyntaxError {
    /// The error as a person should read it: where its cause most likely is, what it means in
    /// plain words, and a hint. The parser's own words are kept only when nothing better is
    /// known.
    pub fn explain(&self, text: &str) -> (Pos, String, Option<String>) {
        let lines: Vec<&str> = text.lines().collect();
        // A tab in the indentation: the parser often notices it only at the token before it,
        // a line early. Point at the tab itself.
        let from = self.pos.line.max(1);
        let tab = lines
            .iter()
            .enumerate()
            .skip(from - 1)
            .take(if self.message.contains("tab") { 2 } else { 1 })
            .find_map(|(i, l)| {
                let lead: String = l.chars().take_while(|c| c.is_whitespace()).collect();
                lead.find('\t').map(|c| Pos {
                    line: i + 1,
                    col: lead[..c].chars().count() + 1,
                })
            });
        if let Some(pos) = tab {
            return (
                pos,
                "a tab in the indentation".into(),
                Some("YAML does not allow tabs there: indent with spaces only".into()),
            );
        }
        if self.message.contains("mapping values are not allowed") {
            let line = self.pos.line;
            let this = lines.get(line.wrapping_sub(1)).copied().unwrap_or("");
            let prev = (1..line)
                .rev()
                .find(|&n| lines.get(n - 1).is_some_and(|l| !is_blank(l)));
            if let Some(prev) = prev {
                let (a, b) = (key_column(this), key_column(lines[prev - 1]));
                if a != b {
                    return (
                        Pos { line, col: a },
                        "a `key: value` where none may start: the indentation does not match"
                            .into(),
                        Some(format!(
                            "line {line} starts at column {a}, the key on line {prev} at column {b}: keys of one mapping start in the same column, and a nested mapping goes under a key that ends with `:`"
                        )),
                    );
                }
            }
            return (
                self.pos,
                "a `: ` inside a value that is not quoted".into(),
                Some("quote the value, e.g. `run: 'echo a: b'`".into()),
            );
        }
        (self.pos, self.message.clone(), None)
    }
}

impl Source {
    /// Parses `text` into the positioned tree. Only the first document is used.
    pub fn parse(path: &Path, text: String) -> Result<Source, SyntaxError> {
        let root = build(&text)?;
        Ok(Source {
            path: path.to_path_buf(),
            text,
            root,
            others: Vec::new(),
        })
    }

    /// The text of a 1-based line.
    pub fn line(&self, line: usize) -> Option<&str> {
        self.text.lines().nth(line.checked_sub(1)?)
    }

    /// The file a node of `origin` was written in.
    pub fn file_of(&self, origin: usize) -> &Path {
        match origin.checked_sub(1).and_then(|i| self.others.get(i)) {
            Some((path, _)) => path,
            None => &self.path,
        }
    }

    /// The text of a 1-based line of the file a node of `origin` was written in.
    pub fn line_in(&self, origin: usize, line: usize) -> Option<&str> {
        let text = match origin.checked_sub(1).and_then(|i| self.others.get(i)) {
            Some((_, text)) => text,
            None => &self.text,
        };
        text.lines().nth(line.checked_sub(1)?)
    }

    /// Like [`Source::locate`], with the origin of the node found.
    pub fn locate_origin(&self, path: &[Seg]) -> (usize, Pos, usize) {
        for len in (0..=path.len()).rev() {
            if let Some(node) = self.node(&path[..len]) {
                return (node.origin, node.pos, node.width);
            }
        }
        (0, Pos { line: 1, col: 1 }, 1)
    }

    /// Like [`Source::locate_key`], with the origin of the key found.
    pub fn locate_key_origin(&self, path: &[Seg]) -> (usize, Pos, usize) {
        if let Some((Seg::Key(k), parent)) = path.split_last() {
            if let Some(Node {
                kind: NodeKind::Map(entries),
                ..
            }) = self.node(parent)
            {
                if let Some(e) = entries.iter().find(|e| &e.key == k) {
                    return (e.value.origin, e.key_pos, k.chars().count().max(1));
                }
            }
        }
        self.locate_origin(path)
    }

    /// The node at `path`, if it exists (no alias is followed).
    pub fn node(&self, path: &[Seg]) -> Option<&Node> {
        let mut node = self.root.as_ref()?;
        for seg in path {
            node = match (&node.kind, seg) {
                (NodeKind::Map(entries), Seg::Key(k)) => {
                    &entries.iter().find(|e| &e.key == k)?.value
                }
                (NodeKind::Seq(items), Seg::Index(i)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// Position and width of the value at `path`, or of its nearest existing ancestor: an error
    /// about a missing key points at the mapping that lacks it.
    pub fn locate(&self, path: &[Seg]) -> (Pos, usize) {
        for len in (0..=path.len()).rev() {
            if let Some(node) = self.node(&path[..len]) {
                return (node.pos, node.width);
            }
        }
        (Pos { line: 1, col: 1 }, 1)
    }

    /// Position and width of the KEY at the end of `path` (for unknown or duplicate keys).
    pub fn locate_key(&self, path: &[Seg]) -> (Pos, usize) {
        if let Some((Seg::Key(k), parent)) = path.split_last() {
            if let Some(Node {
                kind: NodeKind::Map(entries),
                ..
            }) = self.node(parent)
            {
                if let Some(e) = entries.iter().find(|e| &e.key == k) {
                    return (e.key_pos, k.chars().count().max(1));
                }
            }
        }
        self.locate(path)
    }
}

/// A plain scalar read the way YAML 1.2's core schema reads it: null, bool, number or text.
pub(crate) fn plain_value(text: &str) -> serde_yaml_ng::Value {
    use serde_yaml_ng::Value;
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(n) = text.parse::<i64>() {
        return Value::Number(n.into());
    }
    if let Ok(n) = text.parse::<u64>() {
        return Value::Number(n.into());
    }
    let looks_numeric = text
        .trim_start_matches(['-', '+'])
        .starts_with(|c: char| c.is_ascii_digit() || c == '.');
    match text.parse::<f64>() {
        Ok(f) if looks_numeric && f.is_finite() => Value::Number(f.into()),
        _ => Value::String(text.to_string()),
    }
}

impl Source {
    /// The document as a YAML value with the entries at the paths in `drop` left out (their
    /// key paths as [`path_text`] writes them), and the positions of the mappings that lost an
    /// entry. None when the document uses aliases, which this tree does not resolve.
    ///
    /// This lets the later checks run on a playbook that still has wrong keys, so that their
    /// errors are reported together with the wrong keys; it never builds a playbook that runs.
    pub fn value_without(&self, drop: &[String]) -> Option<(serde_yaml_ng::Value, Vec<Pos>)> {
        fn conv(
            node: &Node,
            path: &mut Vec<Seg>,
            drop: &[String],
            pruned: &mut Vec<Pos>,
        ) -> Option<serde_yaml_ng::Value> {
            use serde_yaml_ng::Value;
            Some(match &node.kind {
                NodeKind::Alias => return None,
                NodeKind::Scalar(s) if node.plain => plain_value(s),
                NodeKind::Scalar(s) => Value::String(s.clone()),
                NodeKind::Seq(items) => {
                    let mut out = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        path.push(Seg::Index(i));
                        let v = conv(item, path, drop, pruned);
                        path.pop();
                        out.push(v?);
                    }
                    Value::Sequence(out)
                }
                NodeKind::Map(entries) => {
                    let mut out = serde_yaml_ng::Mapping::new();
                    for e in entries {
                        path.push(Seg::Key(e.key.clone()));
                        let dropped = drop.contains(&path_text(path));
                        let v = if dropped {
                            pruned.push(node.pos);
                            None
                        } else {
                            Some(conv(&e.value, path, drop, pruned))
                        };
                        path.pop();
                        if let Some(v) = v {
                            out.insert(Value::String(e.key.clone()), v?);
                        }
                    }
                    Value::Mapping(out)
                }
            })
        }
        let mut pruned = Vec::new();
        let value = conv(self.root.as_ref()?, &mut Vec::new(), drop, &mut pruned)?;
        Some((value, pruned))
    }
}

fn pos_of(m: &saphyr_parser::Marker) -> Pos {
    Pos {
        line: m.line().max(1),
        col: m.col() + 1,
    }
}

/// Deepest nesting accepted; deeper input is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;

fn build(text: &str) -> Result<Option<Node>, SyntaxError> {
    enum Frame {
        Map {
            pos: Pos,
            entries: Vec<Entry>,
            key: Option<(String, Pos)>,
        },
        Seq {
            pos: Pos,
            items: Vec<Node>,
        },
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut seen_document = false;
    // Counted once: per scalar it made loading quadratic in the file's length.
    let text_chars = text.chars().count();

    // Pushes a finished node into its parent; returns the node if there is no parent.
    fn attach(stack: &mut [Frame], node: Node) -> Result<Option<Node>, SyntaxError> {
        match stack.last_mut() {
            None => Ok(Some(node)),
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(None)
            }
            Some(Frame::Map { entries, key, .. }) => {
                match key.take() {
                    None => {
                        // This node is a key. Only scalar keys are meaningful in a playbook.
                        let text = match node.kind {
                            NodeKind::Scalar(s) => s,
                            _ => {
                                return Err(SyntaxError {
                                    pos: node.pos,
                                    message: "a mapping key must be plain text".into(),
                                })
                            }
                        };
                        *key = Some((text, node.pos));
                    }
                    Some((k, key_pos)) => entries.push(Entry {
                        key: k,
                        key_pos,
                        value: node,
                    }),
                }
                Ok(None)
            }
        }
    }

    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| SyntaxError {
            pos: pos_of(e.marker()),
            message: e.info().to_string(),
        })?;
        let pos = pos_of(&span.start);
        let finished = match event {
            Event::DocumentStart(_) => {
                if seen_document {
                    break;
                }
                seen_document = true;
                None
            }
            Event::MappingStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(SyntaxError {
                        pos,
                        message: format!("nesting deeper than {MAX_DEPTH} levels"),
                    });
                }
                stack.push(Frame::Map {
                    pos,
                    entries: Vec::new(),
                    key: None,
                });
                None
            }
            Event::SequenceStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(SyntaxError {
                        pos,
                        message: format!("nesting deeper than {MAX_DEPTH} levels"),
                    });
                }
                stack.push(Frame::Seq {
                    pos,
                    items: Vec::new(),
                });
                None
            }
            Event::MappingEnd | Event::SequenceEnd => match stack.pop() {
                Some(Frame::Map { pos, entries, .. }) => Some(Node {
                    kind: NodeKind::Map(entries),
                    pos,
                    width: 1,
                    plain: false,
                    origin: 0,
                }),
                Some(Frame::Seq { pos, items }) => Some(Node {
                    kind: NodeKind::Seq(items),
                    pos,
                    width: 1,
                    plain: false,
                    origin: 0,
                }),
                None => None,
            },
            Event::Scalar(value, style, ..) => {
                let width = span_width(text_chars, &span).max(1);
                Some(Node {
                    kind: NodeKind::Scalar(value.into_owned()),
                    pos,
                    width,
                    plain: matches!(style, saphyr_parser::ScalarStyle::Plain),
                    origin: 0,
                })
            }
            Event::Alias(_) => Some(Node {
                kind: NodeKind::Alias,
                pos,
                width: 1,
                plain: false,
                origin: 0,
            }),
            _ => None,
        };
        if let Some(node) = finished {
            if let Some(top) = attach(&mut stack, node)? {
                root = Some(top);
            }
        }
    }
    Ok(root)
}

/// Characters on the first line of a span, so the caret covers `comand` and not the rest.
/// `text_chars` is the length of the whole text in characters, which bounds the width.
fn span_width(text_chars: usize, span: &saphyr_parser::Span) -> usize {
    if span.start.line() != span.end.line() {
        return 1;
    }
    span.end
        .index()
        .saturating_sub(span.start.index())
        .max(1)
        .min(text_chars.saturating_sub(span.start.index()).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source {
        Source::parse(Path::new("t.yaml"), text.to_string()).unwrap()
    }

    #[test]
    fn locates_nested_values_with_one_based_columns() {
        let s = src("name: x\nsteps:\n  - id: a\n    on: web\n");
        let path = [
            Seg::Key("steps".into()),
            Seg::Index(0),
            Seg::Key("on".into()),
        ];
        let (pos, width) = s.locate(&path);
        assert_eq!(pos, Pos { line: 4, col: 9 });
        assert_eq!(width, 3);
        assert_eq!(s.locate_key(&path).0, Pos { line: 4, col: 5 });
        assert_eq!(path_text(&path), "steps[0].on");
    }

    #[test]
    fn missing_path_points_at_the_nearest_parent() {
        let s = src("window:\n  timezone: UTC\n");
        let (pos, _) = s.locate(&[Seg::Key("window".into()), Seg::Key("margin".into())]);
        assert_eq!(pos.line, 2);
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = Source::parse(Path::new("t.yaml"), "a: [1, 2\nb: c\n".into()).unwrap_err();
        assert!(err.pos.line >= 1);
        assert!(!err.message.is_empty());
    }
}
