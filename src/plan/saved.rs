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
struct SavedSource {
    path: PathBuf,
    sha256: String,
}

#[derive(Deserialize)]
struct SavedGiven {
    name: String,
    value: String,
}

#[derive(Deserialize, Default)]
struct SavedComposition {
    procedure: Option<SavedSource>,
    #[serde(default)]
    vars_files: Vec<SavedSource>,
    #[serde(default)]
    given: Vec<SavedGiven>,
}

#[derive(Deserialize)]
struct SavedView {
    format: u32,
    playbook_sha256: String,
    #[serde(default)]
    composition: Option<SavedComposition>,
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
    composition_diffs(saved.composition.as_ref(), pb, &mut diffs);
    if saved.playbook_sha256 != pb.sha256 && diffs.is_empty() {
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

/// What differs in a customer file's parts: its procedure, its vars files, the variables
/// given on the command line. (The playbook hash covers them all; this says which.)
fn composition_diffs(saved: Option<&SavedComposition>, pb: &Playbook, diffs: &mut Vec<String>) {
    let empty = SavedComposition::default();
    let saved = saved.unwrap_or(&empty);
    let now = pb.composition.clone().unwrap_or_default();
    match (&saved.procedure, &now.procedure) {
        (Some(old), Some(new)) if old.path != new.path => diffs.push(format!(
            "the procedure is now {} (reviewed: {})",
            new.path.display(),
            old.path.display()
        )),
        (Some(old), Some(new)) if old.sha256 != new.sha256 => diffs.push(format!(
            "the procedure {} changed (reviewed sha256 {}, now {})",
            new.path.display(),
            short(&old.sha256),
            short(&new.sha256)
        )),
        (None, Some(new)) => diffs.push(format!(
            "the procedure {} was not in the reviewed plan",
            new.path.display()
        )),
        (Some(old), None) => diffs.push(format!(
            "the reviewed plan had the procedure {}; the playbook names none now",
            old.path.display()
        )),
        _ => {}
    }
    let files = |v: &mut dyn Iterator<Item = (String, String)>| v.collect::<Vec<_>>();
    let old_files = files(
        &mut saved
            .vars_files
            .iter()
            .map(|f| (f.path.display().to_string(), f.sha256.clone())),
    );
    let new_files = files(
        &mut now
            .vars_files
            .iter()
            .map(|f| (f.path.display().to_string(), f.sha256.clone())),
    );
    if old_files != new_files {
        diffs.push("the --vars files differ from the reviewed plan's".to_string());
    }
    let old_given: Vec<(&str, &str)> = saved
        .given
        .iter()
        .map(|g| (g.name.as_str(), g.value.as_str()))
        .collect();
    let new_given: Vec<(&str, &str)> = now
        .given
        .iter()
        .map(|g| (g.name.as_str(), g.value.as_str()))
        .collect();
    if old_given != new_given {
        let show = |v: &[(&str, &str)]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.iter()
                    .map(|(n, x)| format!("{n}={x}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        diffs.push(format!(
            "the variables given on the command line differ (reviewed: {}; now: {})",
            show(&old_given),
            show(&new_given)
        ));
    }
}

fn short(h: &str) -> &str {
    &h[..12.min(h.len())]
}
