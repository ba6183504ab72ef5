//! The one thread that follows the journals and logs and publishes what changed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};

use super::model::{page_cutover, still, PageCutover};
use super::tails::{pair_of_log, read_new_lines, FileTail, OutputLine, RunTail, Tails, TAIL_LINES};
use super::{Cutover, Snapshot};
use crate::clock::Clock;
use crate::journal::{self, Journal};

/// How often the follower looks at the journals and logs.
pub(super) const TICK: Duration = Duration::from_millis(250);
/// Everything is computed again this often even when no journal changed (a runner that died
/// changes nothing in its journal); it is sent only if it differs.
pub(super) const REFRESH: Duration = Duration::from_secs(5);

/// The follower: one thread for all cutovers and all pages.
pub(super) struct Follower {
    pub(super) cutovers: Vec<Cutover>,
    pub(super) clock: Clock,
    pub(super) host: String,
    pub(super) journals: Vec<Option<Journal>>,
    pub(super) versions: Vec<Option<i64>>,
    pub(super) lock_stamps: Vec<Option<std::time::SystemTime>>,
    pub(super) inodes: Vec<Option<u64>>,
    pub(super) snapshot: watch::Sender<Snapshot>,
    /// What each cutover's data was last published as, without the times that move by
    /// themselves, and the JSON published then.
    pub(super) published: Vec<Option<(String, Arc<String>)>>,
    pub(super) tails: Arc<Mutex<Tails>>,
    pub(super) lines: broadcast::Sender<Arc<String>>,
}

impl Follower {
    pub(super) fn run(mut self) {
        let mut last_refresh: Option<Instant> = None;
        loop {
            let changed = self.poll_journals();
            if changed || last_refresh.is_none_or(|t| t.elapsed() >= REFRESH) {
                last_refresh = Some(Instant::now());
                self.publish();
            }
            self.follow_logs();
            if self.snapshot.is_closed() {
                return;
            }
            std::thread::sleep(TICK);
        }
    }

    /// Opens journals that appeared and tells whether any changed since the last look.
    pub(super) fn poll_journals(&mut self) -> bool {
        let mut changed = false;
        for i in 0..self.cutovers.len() {
            // A journal deleted or replaced (a fresh start) is read anew.
            let inode = std::fs::metadata(&self.cutovers[i].state)
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
            if inode != self.inodes[i] {
                self.inodes[i] = inode;
                self.journals[i] = None;
                changed = true;
            }
            if self.journals[i].is_none() {
                match Journal::open_read_only(&self.cutovers[i].state) {
                    Ok(Some(j)) => {
                        self.journals[i] = Some(j);
                        changed = true;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!("{}: {e}", self.cutovers[i].state.display()),
                }
            }
            let version = self.journals[i]
                .as_ref()
                .and_then(|j| j.data_version().ok());
            if version != self.versions[i] {
                self.versions[i] = version;
                changed = true;
            }
            let lock = journal::lock::lock_path(&self.cutovers[i].state);
            let stamp = std::fs::metadata(lock).and_then(|m| m.modified()).ok();
            if stamp != self.lock_stamps[i] {
                self.lock_stamps[i] = stamp;
                changed = true;
            }
        }
        changed
    }

    pub(super) fn publish(&mut self) {
        let page: Vec<PageCutover> = self
            .cutovers
            .iter()
            .zip(&self.journals)
            .map(|(c, j)| page_cutover(c, j.as_ref(), &self.clock, &self.host))
            .collect();
        // Follow the latest run's output.
        if let Ok(mut tails) = self.tails.lock() {
            for (i, p) in page.iter().enumerate() {
                let run = p
                    .status
                    .as_ref()
                    .and_then(|s| s.last_run.as_ref())
                    .map(|r| r.id.clone());
                if tails.cutovers[i].run != run {
                    tails.cutovers[i] = RunTail {
                        run,
                        files: BTreeMap::new(),
                    };
                    let _ = self.lines.send(Arc::new(String::from("reset")));
                }
            }
        }
        let mut changed = false;
        for (i, p) in page.iter().enumerate() {
            let (Ok(json), Ok(sig)) = (serde_json::to_string(p), serde_json::to_string(&still(p)))
            else {
                tracing::warn!("cannot serialize the page data");
                continue;
            };
            if self.published[i]
                .as_ref()
                .is_none_or(|(old, _)| *old != sig)
            {
                self.published[i] = Some((sig, Arc::new(json)));
                changed = true;
            }
        }
        if changed {
            let all = self
                .published
                .iter()
                .map(|p| {
                    p.as_ref()
                        .map_or_else(|| Arc::new(String::from("null")), |(_, j)| j.clone())
                })
                .collect();
            let _ = self.snapshot.send(Arc::new(all));
        }
    }

    pub(super) fn follow_logs(&mut self) {
        let Ok(mut tails) = self.tails.lock() else {
            return;
        };
        for (i, c) in self.cutovers.iter().enumerate() {
            let tail = &mut tails.cutovers[i];
            let Some(run) = tail.run.clone() else {
                continue;
            };
            let dir = crate::paths::run_folder(&c.runs_dir, &run);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.ends_with(".log") {
                    continue;
                }
                if !tail.files.contains_key(&name) {
                    let Some((step, target)) = pair_of_log(&c.playbook, &name) else {
                        continue;
                    };
                    tail.files.insert(
                        name.clone(),
                        FileTail {
                            step,
                            target,
                            ..FileTail::default()
                        },
                    );
                }
                let Some(ft) = tail.files.get_mut(&name) else {
                    continue;
                };
                // Most logs did not grow since the last look: a stat, not an open.
                if entry.metadata().is_ok_and(|m| m.len() == ft.offset) {
                    continue;
                }
                for line in read_new_lines(&entry.path(), ft) {
                    let msg = OutputLine {
                        cutover: i,
                        step: &ft.step,
                        target: &ft.target,
                        line: &line,
                    };
                    if let Ok(json) = serde_json::to_string(&msg) {
                        let _ = self.lines.send(Arc::new(json));
                    }
                    ft.lines.push_back(line);
                    while ft.lines.len() > TAIL_LINES {
                        ft.lines.pop_front();
                    }
                }
            }
        }
    }
}
