//! A reviewed plan saved to disk, and the check that what runs is what was reviewed.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Plan;
use crate::playbook::Playbook;

#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error("cannot write the plan to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the reviewed plan {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a plan saved by `runner plan --out` ({reason})")]
    Invalid { path: PathBuf, reason: String },
    #[error("the playbook differs from the reviewed plan {path}:\n{}\nnothing was run; review the changes with `runner plan` and save a new plan", .differences.iter().map(|d| format!("  - {d}")).collect::<Vec<_>>().join("\n"))]
    Mismatch {
        path: PathBuf,
        differences: Vec<String>,
    },
}

/// Writes the plan as JSON, atomically (a half-written plan must never be found).
pub fn save(plan: &Plan, path: &Path) -> Result<(), SavedPlanError> {
    let err = |source| SavedPlanError::Write {
        path: path.to_path_buf(),
        source,
    };
    let json = serde_json::to_string_pretty(plan).map_err(|e| err(std::io::Error::other(e)))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json + "\n").map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[derive(Deserialize)]
struct SavedFile {
    written: String,
    sha256: String,
}

#[derive(Deserialize)]
struct SavedRendered {
    target: String,
    def_hash: String,
}

#[derive(Deserialize)]
struct SavedStep {
    id: String,
    rendered: Vec<SavedRendered>,
}

#[derive(Deserialize)]
struct SavedView {
    format: u32,
    playbook_sha256: String,
    files: Vec<SavedFile>,
    steps: Vec<SavedStep>,
}

/// Refuses unless the playbook's bytes, every file it sends, and every step as rendered for
/// every target are exactly what the saved plan recorded.
pub fn verify(path: &Path, pb: &Playbook) -> Result<(), SavedPlanError> {
    let text = std::fs::read_to_string(path).map_err(|source| SavedPlanError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let saved: SavedView = serde_json::from_str(&text).map_err(|e| SavedPlanError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if saved.format != 1 {
        return Err(SavedPlanError::Invalid {
            path: path.to_path_buf(),
            reason: format!("plan format {} is not supported", saved.format),
        });
    }
    let mut diffs = Vec::new();
    if saved.playbook_sha256 != pb.sha256 {
        diffs.push(format!(
            "the playbook file changed (reviewed sha256 {}, now {})",
            short(&saved.playbook_sha256),
            short(&pb.sha256)
        ));
    }
    for f in &saved.files {
        match pb.files.iter().find(|x| x.written == f.written) {
            None => diffs.push(format!("`{}` is no longer used by the playbook", f.written)),
            Some(now) if now.sha256 != f.sha256 => diffs.push(format!(
                "`{}` changed (reviewed sha256 {}, now {})",
                f.written,
                short(&f.sha256),
                short(&now.sha256)
            )),
            Some(_) => {}
        }
    }
    for f in &pb.files {
        if !saved.files.iter().any(|x| x.written == f.written) {
            diffs.push(format!("`{}` was not in the reviewed plan", f.written));
        }
    }
    // The playbook hash covers the text; this catches what the text does not (a changed
    // environment can change nothing here, since secrets are not templated).
    for s in &pb.steps {
        match saved.steps.iter().find(|x| x.id == s.id) {
            None => diffs.push(format!("step `{}` was not in the reviewed plan", s.id)),
            Some(old) => {
                for r in &s.rendered {
                    if !old
                        .rendered
                        .iter()
                        .any(|o| o.target == r.target && o.def_hash == r.def_hash)
                    {
                        diffs.push(format!(
                            "step `{}` on `{}` differs from the reviewed plan",
                            s.id, r.target
                        ));
                    }
                }
            }
        }
    }
    for old in &saved.steps {
        if !pb.steps.iter().any(|s| s.id == old.id) {
            diffs.push(format!("step `{}` was removed since the review", old.id));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(SavedPlanError::Mismatch {
            path: path.to_path_buf(),
            differences: diffs,
        })
    }
}

fn short(h: &str) -> &str {
    &h[..12.min(h.len())]
}
