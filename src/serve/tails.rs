//! The last lines of each pair's output, read as the run's logs grow.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::Serialize;

use crate::engine::runlog::RunLog;
use crate::playbook::Playbook;

/// Output lines kept per pair for a page that connects (the live tail).
pub(super) const TAIL_LINES: usize = 30;
/// A longer line is cut: the page is a tail, the log file keeps everything.
pub(super) const MAX_LINE: usize = 500;
/// At most this much of an existing log is read when the follower first sees it.
pub(super) const FIRST_READ: u64 = 64 * 1024;

/// The last lines of each pair's output in each cutover's latest run.
#[derive(Default)]
pub(super) struct Tails {
    /// Per cutover: the run being followed and its pairs' tails, keyed by log file name.
    pub(super) cutovers: Vec<RunTail>,
}

#[derive(Default)]
pub(super) struct RunTail {
    pub(super) run: Option<String>,
    pub(super) files: BTreeMap<String, FileTail>,
}

#[derive(Default)]
pub(super) struct FileTail {
    pub(super) step: String,
    pub(super) target: String,
    pub(super) offset: u64,
    pub(super) partial: Vec<u8>,
    pub(super) lines: VecDeque<String>,
}

#[derive(Serialize)]
pub(super) struct OutputLine<'a> {
    pub(super) cutover: usize,
    pub(super) step: &'a str,
    pub(super) target: &'a str,
    pub(super) line: &'a str,
}

#[derive(Serialize)]
pub(super) struct TailSnapshot<'a> {
    pub(super) cutover: usize,
    pub(super) run: Option<&'a str>,
    pub(super) step: &'a str,
    pub(super) target: &'a str,
    pub(super) lines: &'a VecDeque<String>,
}

impl Tails {
    /// Every tail as JSON, for a page that connects.
    pub(super) fn snapshot(&self) -> String {
        let mut all = Vec::new();
        for (i, c) in self.cutovers.iter().enumerate() {
            for f in c.files.values() {
                all.push(TailSnapshot {
                    cutover: i,
                    run: c.run.as_deref(),
                    step: &f.step,
                    target: &f.target,
                    lines: &f.lines,
                });
            }
        }
        serde_json::to_string(&all).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// Which step and target a log file belongs to.
pub(super) fn pair_of_log(pb: &Playbook, name: &str) -> Option<(String, String)> {
    for step in &pb.steps {
        for t in &step.targets {
            if RunLog::output_name(&step.id, t) == name {
                return Some((step.id.clone(), t.clone()));
            }
        }
    }
    let stem = name.strip_suffix(".log")?;
    let (s, t) = stem.split_once('@')?;
    Some((s.to_owned(), t.to_owned()))
}

/// Reads what was appended to `path` since `tail.offset`; returns the new complete lines.
pub(super) fn read_new_lines(path: &Path, tail: &mut FileTail) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len < tail.offset {
        // Replaced or truncated: start over.
        tail.offset = 0;
        tail.partial.clear();
    }
    if len == tail.offset {
        return Vec::new();
    }
    let mut skip_first = false;
    if tail.offset == 0 && len > FIRST_READ {
        tail.offset = len - FIRST_READ;
        skip_first = true;
    }
    if f.seek(SeekFrom::Start(tail.offset)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if f.take(len - tail.offset).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    tail.offset += buf.len() as u64;
    tail.partial.extend_from_slice(&buf);
    let mut out = Vec::new();
    while let Some(nl) = tail.partial.iter().position(|&b| b == b'\n') {
        let raw: Vec<u8> = tail.partial.drain(..=nl).collect();
        if skip_first {
            // Started in the middle of a line.
            skip_first = false;
            continue;
        }
        let mut line = String::from_utf8_lossy(&raw[..raw.len() - 1]).into_owned();
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    pub(super) fn a_line_written_in_two_pieces_is_shown_once_complete() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s@t.log");
        let mut f = std::fs::File::create(&path).expect("create");
        let mut tail = FileTail::default();
        write!(f, "one\ntw").expect("write");
        assert_eq!(read_new_lines(&path, &mut tail), ["one"]);
        assert!(read_new_lines(&path, &mut tail).is_empty());
        write!(f, "o\nthree\n").expect("write");
        assert_eq!(read_new_lines(&path, &mut tail), ["two", "three"]);
    }

    #[test]
    pub(super) fn a_long_log_is_read_from_its_end_starting_at_a_whole_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s@t.log");
        let line = "x".repeat(99);
        let text: String = (0..2000).map(|i| format!("{i:05} {line}\n")).collect();
        std::fs::write(&path, &text).expect("write");
        let mut tail = FileTail::default();
        let lines = read_new_lines(&path, &mut tail);
        assert!(lines.len() < 2000 && !lines.is_empty());
        assert_eq!(
            lines.last().map(String::as_str),
            Some(&*format!("01999 {line}"))
        );
        assert!(
            lines.iter().all(|l| l.len() == 6 + line.len()),
            "no cut line"
        );
    }

    #[test]
    pub(super) fn a_truncated_log_is_read_again_from_the_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s@t.log");
        std::fs::write(&path, "first run line\n").expect("write");
        let mut tail = FileTail::default();
        assert_eq!(read_new_lines(&path, &mut tail), ["first run line"]);
        std::fs::write(&path, "new\n").expect("write");
        assert_eq!(read_new_lines(&path, &mut tail), ["new"]);
    }
}
