//! Errors about a playbook, shown the way a compiler shows them: file, line, column, the
//! source line with a caret under the offending text, and what would be valid.

use std::fmt;
use std::path::{Path, PathBuf};

use super::source::{path_text, Pos, Seg, Source};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub pos: Pos,
    /// The dotted key path, e.g. `steps[3].on` (empty for whole-file errors).
    pub key: String,
    pub message: String,
    pub help: Option<String>,
    /// Context after the help, e.g. that the parser stopped here.
    pub note: Option<String>,
    /// A wrong value that still deserializes (a duration is text to serde): loading goes on
    /// to the later checks, which then do not report the same place again.
    pub(crate) soft: bool,
    line_text: Option<String>,
    width: usize,
}

impl Diagnostic {
    /// An error about the value at `path`.
    pub fn at(src: &Source, path: &[Seg], message: impl Into<String>) -> Diagnostic {
        let (origin, pos, width) = src.locate_origin(path);
        Diagnostic::new_in(src, origin, pos, width, path_text(path), message.into())
    }

    /// An error about the key at the end of `path` (unknown or duplicated keys).
    pub fn at_key(src: &Source, path: &[Seg], message: impl Into<String>) -> Diagnostic {
        let (origin, pos, width) = src.locate_key_origin(path);
        Diagnostic::new_in(src, origin, pos, width, path_text(path), message.into())
    }

    /// An error at a known position (syntax errors, serde errors).
    pub fn at_pos(src: &Source, pos: Pos, key: String, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(src, pos, 1, key, message.into())
    }

    /// An error about a file that could not even be read.
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_path_buf(),
            pos: Pos { line: 0, col: 0 },
            key: String::new(),
            message: message.into(),
            help: None,
            note: None,
            soft: false,
            line_text: None,
            width: 0,
        }
    }

    fn new(src: &Source, pos: Pos, width: usize, key: String, message: String) -> Diagnostic {
        Diagnostic::new_in(src, 0, pos, width, key, message)
    }

    /// An error in the file a node of `origin` was written in (see `Node::origin`).
    pub(crate) fn new_in(
        src: &Source,
        origin: usize,
        pos: Pos,
        width: usize,
        key: String,
        message: String,
    ) -> Diagnostic {
        Diagnostic {
            file: src.file_of(origin).to_path_buf(),
            pos,
            key,
            message,
            help: None,
            note: None,
            soft: false,
            line_text: src.line_in(origin, pos.line).map(str::to_string),
            width,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Diagnostic {
        self.note = Some(note.into());
        self
    }

    pub(crate) fn soft(mut self) -> Diagnostic {
        self.soft = true;
        self
    }

    /// Leaves the source line out: for errors about a line that holds a secret.
    pub fn without_source(mut self) -> Diagnostic {
        self.line_text = None;
        self
    }

    pub fn with_help(mut self, help: Option<String>) -> Diagnostic {
        self.help = help;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        if self.pos.line == 0 {
            write!(f, "  --> {}", self.file.display())?;
        } else {
            write!(
                f,
                "  --> {}:{}:{}",
                self.file.display(),
                self.pos.line,
                self.pos.col
            )?;
        }
        if !self.key.is_empty() {
            write!(f, " (at `{}`)", self.key)?;
        }
        writeln!(f)?;
        if let Some(text) = &self.line_text {
            let num = self.pos.line.to_string();
            let pad = " ".repeat(num.len());
            // Tabs would misplace the caret; show them as single spaces.
            let shown: String = text
                .chars()
                .map(|c| if c == '\t' { ' ' } else { c })
                .collect();
            let room = shown
                .chars()
                .count()
                .saturating_sub(self.pos.col - 1)
                .max(1);
            writeln!(f, "{pad} |")?;
            writeln!(f, "{num} | {shown}")?;
            writeln!(
                f,
                "{pad} | {}{}",
                " ".repeat(self.pos.col.saturating_sub(1)),
                "^".repeat(self.width.clamp(1, room))
            )?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "  = help: {help}")?;
        }
        if let Some(note) = &self.note {
            writeln!(f, "  = note: {note}")?;
        }
        Ok(())
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len().max(word.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "did you mean `x`?" or the list of valid choices.
pub fn suggestion_or_choices<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str> + Clone,
) -> String {
    match suggest(word, candidates.clone()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => {
            let all: Vec<String> = candidates.into_iter().map(|c| format!("`{c}`")).collect();
            if all.is_empty() {
                "there is nothing of that kind defined".to_string()
            } else {
                format!("valid: {}", all.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_file_line_column_and_caret() {
        let src = Source::parse(
            Path::new("c.yaml"),
            "steps:\n  - id: a\n    comand: ls\n".into(),
        )
        .unwrap();
        let path = [
            Seg::Key("steps".into()),
            Seg::Index(0),
            Seg::Key("comand".into()),
        ];
        let d =
            Diagnostic::at_key(&src, &path, "unknown key `comand`").help("did you mean `command`?");
        let shown = d.to_string();
        assert!(shown.contains("c.yaml:3:5"), "{shown}");
        assert!(shown.contains("3 |     comand: ls"), "{shown}");
        assert!(shown.contains("  |     ^^^^^^\n"), "{shown}");
        assert!(shown.contains("help: did you mean `command`?"), "{shown}");
    }

    #[test]
    fn suggests_near_misses_only() {
        assert_eq!(suggest("comand", ["command", "check"]), Some("command"));
        assert_eq!(suggest("rollbak", ["run", "rollback"]), Some("rollback"));
        assert_eq!(suggest("zzz", ["run", "rollback"]), None);
    }
}
