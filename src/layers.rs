//! The direction of every import, checked: data flows playbook → plan → engine → transport,
//! with the journal beside the engine, and the views (status, report, ping, serve, progress)
//! read without reaching into the engine. Each module of `src/` says below which others it may
//! use (`crate::...`); a leaf may be used by anyone. A new module, or a new import across
//! layers, has to be added here, where it is seen.

use std::collections::BTreeSet;
use std::path::Path;

/// Small shared things that import no layer: anyone may use them.
const LEAVES: &[(&str, &[&str])] = &[
    ("clock", &[]),
    ("digest", &[]),
    ("duration", &[]),
    ("exit", &[]),
    // The open-file limit of a fan-out.
    ("fdlimit", &[]),
    ("paths", &[]),
    ("secret", &["paths"]),
    // The OpenSSH client configuration file: read by the playbook's loader for `ssh_config:`.
    ("ssh_config", &[]),
    ("target_defaults", &[]),
    ("window", &[]),
];

/// Every other module of the crate and the modules it may use besides the leaves. A path
/// (`engine::event`) allows only that part of a module.
const LAYERS: &[(&str, &[&str])] = &[
    ("transport", &[]),
    ("journal", &[]),
    ("playbook", &[]),
    // The plan may learn estimates from earlier journals (`plan::history`): it only reads them.
    ("plan", &["playbook", "journal"]),
    // From the playbook's targets to transports, and their secrets.
    ("targets", &["playbook", "transport"]),
    (
        "engine",
        &["playbook", "plan", "targets", "transport", "journal"],
    ),
    // Beside the terminal's reporter: reads the engine's events only.
    ("notify", &["playbook", "journal", "engine::event"]),
    // The terminal's reporter: draws the engine's events, and is the operator the engine asks
    // (its interface, and the interrupt that ends a question on Ctrl-C).
    (
        "progress",
        &["engine::event", "engine::operator", "engine::interrupt"],
    ),
    // What is left of a cutover, scheduled from now: read by `plan`'s caller, status, follow.
    ("resume", &["playbook", "plan"]),
    ("status", &["playbook", "plan", "journal", "resume"]),
    // `status --follow`: the status, and the run folder's output logs (`engine::runlog` is their
    // layout, written by the engine and read here).
    (
        "follow",
        &["playbook", "journal", "status", "engine::runlog"],
    ),
    // `apply --background`: the starting command and the run's announcer, a reporter.
    ("background", &["engine::event"]),
    ("report", &["playbook", "plan", "journal", "status"]),
    ("ping", &["playbook", "targets", "transport", "progress"]),
    (
        "serve",
        &[
            "playbook",
            "plan",
            "journal",
            "status",
            "report",
            "engine::runlog",
        ],
    ),
    ("layers", &[]),
];

/// Macros exported at the crate's root, and the module that defines them.
const MACROS: &[(&str, &str)] = &[
    ("outln", "progress"),
    ("out", "progress"),
    ("errln", "progress"),
];

/// The code of a file without its comments (line comments and doc comments).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // Not inside a string on this line: count the quotes before it.
            Some(i) if l[..i].matches('"').count() % 2 == 0 => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::` path in `code`, as its first two segments (`engine::event`), expanding
/// `crate::{a, b::c}` groups.
fn crate_paths(code: &str) -> BTreeSet<String> {
    fn ident(s: &str) -> &str {
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        &s[..end]
    }
    /// `a::b...` → `a::b` (or `a`).
    fn two(s: &str) -> String {
        let first = ident(s);
        let rest = &s[first.len()..];
        match rest.strip_prefix("::") {
            Some(r) if !ident(r).is_empty() => format!("{first}::{}", ident(r)),
            Some(r) if r.starts_with('{') => {
                // `engine::{event, x}`: one path per item.
                first.to_string() + "::{"
            }
            _ => first.to_string(),
        }
    }
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // `$crate::`, `mycrate::`
        }
        let group = |s: &str| -> Vec<String> {
            // Items of a `{...}` group at depth one.
            let mut items = Vec::new();
            let (mut depth, mut start) = (0, 1);
            for (j, c) in s.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' | ',' if depth == 1 => {
                        items.push(s[start..j].trim().to_string());
                        start = j + 1;
                        if c == '}' {
                            break;
                        }
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            items.into_iter().filter(|s| !s.is_empty()).collect()
        };
        if rest.starts_with('{') {
            for item in group(rest) {
                let p = two(&item);
                if let Some(m) = p.strip_suffix("::{") {
                    let inner = &item[item.find('{').unwrap_or(0)..];
                    for sub in group(inner) {
                        out.insert(format!("{m}::{}", ident(&sub)));
                    }
                } else {
                    out.insert(p);
                }
            }
        } else {
            let p = two(rest);
            if let Some(m) = p.strip_suffix("::{") {
                let inner = &rest[rest.find('{').unwrap_or(0)..];
                for sub in group(inner) {
                    out.insert(format!("{m}::{}", ident(&sub)));
                }
            } else {
                out.insert(p);
            }
        }
    }
    out
}

/// Whether `path` (`a` or `a::b`) used from module `from` follows the layers.
fn allowed(from: &str, path: &str) -> bool {
    let module = path.split("::").next().unwrap_or(path);
    let module = MACROS
        .iter()
        .find(|(m, _)| *m == module)
        .map_or(module, |(_, owner)| owner);
    if module == from || module == "self" {
        return true;
    }
    if let Some((_, deps)) = LEAVES.iter().find(|(m, _)| *m == from) {
        return deps.contains(&module);
    }
    if LEAVES.iter().any(|(m, _)| *m == module) {
        return true;
    }
    let Some((_, deps)) = LAYERS.iter().find(|(m, _)| *m == from) else {
        return false;
    };
    deps.iter().any(|d| {
        *d == module || (d.contains("::") && (path == *d || path.starts_with(&format!("{d}::"))))
    })
}

/// Every import in `src/` that runs against the layers: `file: path`.
fn violations(src: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            found.push(format!("{}: cannot be read", dir.display()));
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap_or(&path);
            let top = rel
                .components()
                .next()
                .map(|c| {
                    c.as_os_str()
                        .to_string_lossy()
                        .trim_end_matches(".rs")
                        .to_string()
                })
                .unwrap_or_default();
            // The crate's roots: `lib.rs` declares the modules, the binary may use them all; this
            // file's examples are not imports.
            if matches!(top.as_str(), "lib" | "main" | "cli" | "layers") {
                continue;
            }
            let known = LEAVES.iter().chain(LAYERS).any(|(m, _)| *m == top);
            if !known {
                found.push(format!(
                    "{}: module `{top}` is in no layer (add it to src/layers.rs)",
                    rel.display()
                ));
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for p in crate_paths(&code(&text)) {
                if !allowed(&top, &p) {
                    found.push(format!("{}: crate::{p}", rel.display()));
                }
            }
        }
    }
    found.sort();
    found
}

#[test]
fn imports_follow_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let wrong = violations(&src);
    assert!(
        wrong.is_empty(),
        "imports against the layers (see src/layers.rs):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_module_of_the_crate_has_a_layer() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .unwrap_or_default();
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert!(!declared.is_empty(), "src/lib.rs declares no module");
    for m in declared {
        assert!(
            LEAVES.iter().chain(LAYERS).any(|(n, _)| *n == m),
            "module `{m}` is in no layer (add it to src/layers.rs)"
        );
    }
}

#[test]
fn backward_imports_are_found() {
    let text = "use crate::plan::HORIZON; // crate::engine in a comment\n\
                use crate::{window::Window, engine::{event::Event, targets}};\n\
                let x = crate::transport::ssh::DEFAULT_KEEPALIVE;\n";
    let paths = crate_paths(&code(text));
    let want: BTreeSet<String> = [
        "plan::HORIZON",
        "window::Window",
        "engine::event",
        "engine::targets",
        "transport::ssh",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(paths, want);
    assert!(!allowed("playbook", "plan::HORIZON"));
    assert!(!allowed("playbook", "transport::ssh"));
    assert!(!allowed("status", "engine::targets"));
    assert!(!allowed("progress", "engine::targets"));
    assert!(allowed("progress", "engine::event"));
    assert!(allowed("playbook", "window::Window"));
    assert!(!allowed("secret", "playbook::expand_home"));
    assert!(!allowed("transport", "engine::event"));
}
