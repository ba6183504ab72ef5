//! The run's folder: `.runner/runs/<journal>/<run-id>/` with each pair's output (timestamped, secrets
//! masked) and an events file, one JSON event per line. The journal says what happened; this
//! folder says what the commands printed.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;

use super::event::{Event, Reporter};

pub struct RunLog {
    dir: PathBuf,
    events: Mutex<Option<File>>,
    outputs: Mutex<HashMap<String, File>>,
}

impl RunLog {
    /// Creates the run's folder. Failing to create it is not fatal for the run (the journal is
    /// the record that matters), so errors are reported and logging carries on without files.
    pub fn create(dir: PathBuf) -> std::io::Result<RunLog> {
        std::fs::create_dir_all(&dir)?;
        let events = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("events.jsonl"))?;
        Ok(RunLog {
            dir,
            events: Mutex::new(Some(events)),
            outputs: Mutex::new(HashMap::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// File name of a pair's output log.
    pub fn output_name(step: &str, target: &str) -> String {
        format!("{step}@{target}.log")
    }

    /// Appends one already-masked line of output.
    pub fn output(&self, step: &str, target: &str, stream: &str, line: &str, at: Timestamp) {
        let name = Self::output_name(step, target);
        let Ok(mut files) = self.outputs.lock() else {
            return;
        };
        if !files.contains_key(&name) {
            match OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(&name))
            {
                Ok(f) => {
                    files.insert(name.clone(), f);
                }
                Err(e) => {
                    tracing::warn!("cannot write {}: {e}", self.dir.join(&name).display());
                    return;
                }
            }
        }
        if let Some(f) = files.get_mut(&name) {
            let _ = writeln!(f, "{at} {stream} | {line}");
        }
    }

    /// Appends a marker line (attempt boundaries) to a pair's log.
    pub fn note(&self, step: &str, target: &str, text: &str, at: Timestamp) {
        self.output(step, target, "runner", text, at);
    }
}

impl Reporter for RunLog {
    fn event(&self, event: &Event) {
        if let Ok(mut guard) = self.events.lock() {
            if let Some(f) = guard.as_mut() {
                if let Ok(line) = serde_json::to_string(event) {
                    let _ = writeln!(f, "{line}");
                }
            }
        }
    }
}
