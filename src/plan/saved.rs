//! A reviewed plan saved to disk, and the check that what runs is what was reviewed.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::Plan;
use crate::playbook::{Playbook, Step};

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
struct SavedStep {
    id: String,
    #[serde(default)]
    name: Value,
    #[serde(default)]
    kind: Value,
    #[serde(default)]
    targets: Value,
    #[serde(default)]
    timeout_secs: Value,
    #[serde(default)]
    retries: Value,
    #[serde(default)]
    idempotent: Value,
    #[serde(default)]
    point_of_no_return: Value,
    #[serde(default)]
    business_hours: Value,
    rendered: Vec<Value>,
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
    /// Absent in plans saved before targets and the window were recorded.
    #[serde(default)]
    targets: Option<BTreeMap<String, String>>,
    #[serde(default)]
    window: Option<Vec<String>>,
    steps: Vec<SavedStep>,
}

/// Refuses unless what the playbook does is what the saved plan recorded: the same steps in
/// the same order, each with the same attributes and the same command, check and rollback on
/// each target (their fingerprints); every file it sends with the same SHA-256; every target
/// at the same address; the same window. The playbook file's bytes are not compared: a comment
/// or a reformatting that changes none of these does not invalidate a review.
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
    step_diffs(&saved.steps, pb, &mut diffs);
    for f in &saved.files {
        match pb.files.iter().find(|x| x.written == f.written) {
            None => diffs.push(format!(
                "file `{}` is no longer used by the playbook",
                f.written
            )),
            Some(now) if now.sha256 != f.sha256 => diffs.push(format!(
                "file `{}` changed (reviewed sha256 {}, now {})",
                f.written,
                short(&f.sha256),
                short(&now.sha256)
            )),
            Some(_) => {}
        }
    }
    for f in &pb.files {
        if !saved.files.iter().any(|x| x.written == f.written) {
            diffs.push(format!("file `{}` was not in the reviewed plan", f.written));
        }
    }
    match (&saved.targets, &saved.window) {
        (Some(targets), Some(window)) => {
            let now = super::target_addresses(pb);
            for (name, old) in targets {
                match now.get(name) {
                    None => diffs.push(format!("target `{name}` was removed since the review")),
                    Some(new) if new != old => diffs.push(format!(
                        "target `{name}` changed its address (reviewed: {old}; now: {new})"
                    )),
                    Some(_) => {}
                }
            }
            for (name, new) in &now {
                if !targets.contains_key(name) {
                    diffs.push(format!(
                        "target `{name}` ({new}) was not in the reviewed plan"
                    ));
                }
            }
            let now = super::window_lines(pb);
            if &now != window {
                diffs.push(format!(
                    "the window changed (reviewed: {}; now: {})",
                    window.join(", "),
                    now.join(", ")
                ));
            }
        }
        // A plan saved before targets and the window were recorded: only the bytes tell.
        _ if saved.playbook_sha256 != pb.sha256 && diffs.is_empty() => diffs.push(format!(
            "the playbook file changed (reviewed sha256 {}, now {}); this plan was saved by an \
             older runner, save it again to compare steps instead of bytes",
            short(&saved.playbook_sha256),
            short(&pb.sha256)
        )),
        _ => {}
    }
    composition_diffs(
        saved.composition.as_ref(),
        pb,
        !diffs.is_empty(),
        &mut diffs,
    );
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(SavedPlanError::Mismatch {
            path: path.to_path_buf(),
            differences: diffs,
        })
    }
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// One value for a message, cut short.
fn show(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Null => "none".to_string(),
        other => other.to_string(),
    };
    let s = s.replace('\n', " ");
    if s.chars().count() > 60 {
        format!("`{}…`", s.chars().take(60).collect::<String>())
    } else {
        format!("`{s}`")
    }
}

/// Added, removed and reordered steps; for each kept step, which attribute changed and, per
/// target, whether its action, check or rollback changed.
fn step_diffs(saved: &[SavedStep], pb: &Playbook, diffs: &mut Vec<String>) {
    for old in saved {
        if !pb.steps.iter().any(|s| s.id == old.id) {
            diffs.push(format!("step `{}` was removed since the review", old.id));
        }
    }
    for s in &pb.steps {
        let Some(old) = saved.iter().find(|x| x.id == s.id) else {
            diffs.push(format!("step `{}` was added since the review", s.id));
            continue;
        };
        attribute_diffs(old, s, diffs);
        for r in &s.rendered {
            let now = json(r);
            let Some(was) = old.rendered.iter().find(|o| o["target"] == now["target"]) else {
                continue; // the targets line says it
            };
            let parts = rendered_diffs(was, &now);
            if !parts.is_empty() {
                diffs.push(format!(
                    "step `{}` on `{}`: {}",
                    s.id,
                    r.target,
                    parts.join(", ")
                ));
            }
        }
    }
    diffs.extend(order_diff(saved, pb));
}

/// A step's attributes that changed (name, kind, targets, timeout...); those the saved plan
/// does not have (an older format) are not compared.
fn attribute_diffs(old: &SavedStep, s: &Step, diffs: &mut Vec<String>) {
    let attrs: [(&str, &Value, Value); 8] = [
        ("name", &old.name, json(&s.title())),
        ("kind", &old.kind, json(&s.action.kind())),
        ("targets", &old.targets, json(&s.targets)),
        (
            "timeout",
            &old.timeout_secs,
            json(&s.timeout.map(|d| d.as_secs())),
        ),
        ("retries", &old.retries, json(&s.retries)),
        ("idempotent", &old.idempotent, json(&s.idempotent)),
        (
            "point_of_no_return",
            &old.point_of_no_return,
            json(&s.point_of_no_return),
        ),
        (
            "business_hours",
            &old.business_hours,
            json(&s.business_hours),
        ),
    ];
    for (what, was, now) in attrs {
        if !was.is_null() && *was != now {
            diffs.push(format!(
                "step `{}`: its {what} changed (reviewed: {}; now: {})",
                s.id,
                show(was),
                show(&now)
            ));
        }
    }
}

/// What changed in a step's rendered definition on one target: the action, check, rollback,
/// inputs, or else only what decides its work.
fn rendered_diffs(was: &Value, now: &Value) -> Vec<String> {
    let mut parts = Vec::new();
    parts.extend(action_diff(was, now));
    for (key, word) in [("check", "check"), ("rollback", "rollback")] {
        if was[key] != now[key] {
            parts.push(format!(
                "its {word} changed (reviewed: {}; now: {})",
                show(&was[key]),
                show(&now[key])
            ));
        }
    }
    if was["env"] != now["env"] || was["stdin"] != now["stdin"] {
        parts.push("its environment or standard input changed".to_string());
    }
    if parts.is_empty() && was["def_hash"] != now["def_hash"] {
        parts.push("what decides its work (ok codes) changed".to_string());
    }
    parts
}

/// The action changed: what it is said to be (command, script, instructions), with both
/// versions when they can be shown.
fn action_diff(was: &Value, now: &Value) -> Option<String> {
    if was["action"] == now["action"] {
        return None;
    }
    let kind = now["action"]
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .unwrap_or_default();
    let (word, field) = match kind.as_str() {
        "run" => ("command", "command"),
        "script" => ("script", "sha256"),
        "upload" => ("upload", "sha256"),
        "manual" => ("instructions", "instructions"),
        _ => ("action", "command"),
    };
    let a = &was["action"][&kind][field];
    let b = &now["action"][&kind][field];
    Some(if a.is_null() || a == b {
        format!("its {word} changed")
    } else {
        format!(
            "its {word} changed (reviewed: {}; now: {})",
            show(a),
            show(b)
        )
    })
}

/// The steps kept since the review run in another order.
fn order_diff(saved: &[SavedStep], pb: &Playbook) -> Option<String> {
    let kept_old: Vec<&str> = saved
        .iter()
        .map(|x| x.id.as_str())
        .filter(|id| pb.steps.iter().any(|s| s.id == *id))
        .collect();
    let kept_new: Vec<&str> = pb
        .steps
        .iter()
        .map(|s| s.id.as_str())
        .filter(|id| saved.iter().any(|x| x.id == *id))
        .collect();
    if kept_old == kept_new {
        return None;
    }
    Some(format!(
        "the steps run in another order (reviewed: {}; now: {})",
        kept_old.join(", "),
        kept_new.join(", ")
    ))
}

/// What differs in a customer file's parts: its procedure, its vars files, the variables
/// given on the command line. A file's changed bytes are named only beside a change in
/// content (`changed`), to say where it came from.
fn composition_diffs(
    saved: Option<&SavedComposition>,
    pb: &Playbook,
    changed: bool,
    diffs: &mut Vec<String>,
) {
    let empty = SavedComposition::default();
    let saved = saved.unwrap_or(&empty);
    let now = pb.composition.clone().unwrap_or_default();
    match (&saved.procedure, &now.procedure) {
        (Some(old), Some(new)) if old.path != new.path => diffs.push(format!(
            "the procedure is now {} (reviewed: {})",
            new.path.display(),
            old.path.display()
        )),
        (Some(old), Some(new)) if changed && old.sha256 != new.sha256 => diffs.push(format!(
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
    let paths = |v: &[(String, String)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    if paths(&old_files) != paths(&new_files) || (changed && old_files != new_files) {
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
