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

#[cfg(test)]
mod tests {
    use std::fmt::Write;

    use super::*;

    #[test]
    fn log_lines_are_split_into_stream_and_text() {
        let l = parse_line("2026-11-30T23:00:01Z stdout | copied 3 files | done");
        assert_eq!(l.stream, "stdout");
        assert_eq!(l.text, "copied 3 files | done");
        let l = parse_line("2026-11-30T23:00:01Z stderr |");
        assert_eq!((l.stream.as_str(), l.text.as_str()), ("stderr", ""));
        let l = parse_line("not a log line | at all");
        assert_eq!(l.stream, "");
        assert_eq!(l.text, "not a log line | at all");
    }

    #[test]
    fn long_lines_are_cut() {
        let l = parse_line(&format!(
            "2026-11-30T23:00:01Z stdout | {}",
            "x".repeat(5000)
        ));
        assert_eq!(l.text.chars().count(), MAX_LINE_CHARS + 2);
    }

    #[test]
    fn tail_reads_only_the_end_of_a_big_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.log");
        let mut text = String::new();
        let mut n = 0;
        while (text.len() as u64) < TAIL_BYTES * 2 {
            let _ = writeln!(text, "2026-11-30T23:00:01Z stdout | line {n}");
            n += 1;
        }
        std::fs::write(&path, &text).unwrap();
        let (lines, omitted) = read_tail(&path, 3).unwrap().unwrap();
        assert!(omitted);
        assert_eq!(lines.len(), 3);
        assert!(lines[2].ends_with(&format!("line {}", n - 1)));
        assert!(lines[0].ends_with(&format!("line {}", n - 3)));

        assert!(read_tail(&dir.path().join("none.log"), 3)
            .unwrap()
            .is_none());
        std::fs::write(&path, "").unwrap();
        assert_eq!(read_tail(&path, 3).unwrap(), Some((vec![], false)));
    }

    #[test]
    fn path_components_from_the_journal_cannot_escape() {
        assert!(safe_component("migrate@dc1.log"));
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "a\0b"] {
            assert!(!safe_component(bad), "{bad:?}");
        }
    }
}
