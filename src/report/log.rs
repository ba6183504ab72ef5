//! Reading the per-pair output logs of the run folders: the last lines of each, split into
//! stream and text, never outside the run folder.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use jiff::Timestamp;

use super::{OutputLine, OutputStatus, OutputTail, TAIL_LINES};

/// Longer output lines are cut; a single line of a binary dump must not make the report huge.
pub(super) const MAX_LINE_CHARS: usize = 1000;

/// At most this much of the end of a log file is read: logs can be gigabytes, and fifteen
/// lines are almost always in the last few KiB.
pub(super) const TAIL_BYTES: u64 = 256 * 1024;

/// A journal value used as a file name component. Anything that could leave the run folder
/// is refused, so a damaged or hostile journal cannot make the report read other files.
pub(super) fn safe_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0'])
}

pub(super) fn read_output(runs_dir: &Path, run: &str, step: &str, target: &str) -> OutputTail {
    let name = format!("{step}@{target}.log");
    let mut tail = OutputTail {
        file: format!("{run}/{name}"),
        status: OutputStatus::Missing,
        error: None,
        lines: Vec::new(),
        earlier_omitted: false,
    };
    if !safe_component(run) || !safe_component(&name) || !safe_component(step) {
        return tail;
    }
    match read_tail(
        &crate::paths::run_folder(runs_dir, run).join(&name),
        TAIL_LINES,
    ) {
        Ok(None) => {}
        Ok(Some((lines, omitted))) => {
            tail.status = if lines.is_empty() {
                OutputStatus::Empty
            } else {
                OutputStatus::Recorded
            };
            tail.lines = lines.iter().map(|l| parse_line(l)).collect();
            tail.earlier_omitted = omitted;
        }
        Err(e) => {
            tail.status = OutputStatus::Unreadable;
            tail.error = Some(e.to_string());
        }
    }
    tail
}

/// The last `max` lines of a file (`None` if it does not exist) and whether earlier lines were
/// left out.
pub(super) fn read_tail(path: &Path, max: usize) -> io::Result<Option<(Vec<String>, bool)>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    // The engine may still be appending; read no more than was there when we looked.
    file.take(len - start).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    let mut omitted = false;
    if start > 0 && !lines.is_empty() {
        // The first line read is probably the end of a longer one.
        lines.remove(0);
        omitted = true;
    }
    if lines.len() > max {
        lines.drain(..lines.len() - max);
        omitted = true;
    }
    Ok(Some((
        lines
            .into_iter()
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
            .collect(),
        omitted,
    )))
}

/// `<RFC3339> <stream> | <text>`; a line in another shape is kept whole as text.
pub(super) fn parse_line(line: &str) -> OutputLine {
    let parsed = line.split_once(' ').and_then(|(at, rest)| {
        at.parse::<Timestamp>().ok()?;
        let (stream, text) = rest.split_once('|')?;
        let stream = stream.trim();
        if stream.is_empty() || stream.contains(char::is_whitespace) {
            return None;
        }
        Some(OutputLine {
            stream: stream.to_owned(),
            text: cut(text.strip_prefix(' ').unwrap_or(text)),
        })
    });
    parsed.unwrap_or_else(|| OutputLine {
        stream: String::new(),
        text: cut(line),
    })
}

pub(super) fn cut(s: &str) -> String {
    if s.chars().count() <= MAX_LINE_CHARS {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(MAX_LINE_CHARS).collect();
    out.push_str(" …");
    out
}
