//! The flagship's evidence: the inventories and exports its steps write to C:\mig on new-sbs
//! are fetched to the runner's machine, into a folder per customer beside the customer files,
//! each after the step that writes it, without adding a review warning. The folder the local
//! step makes (its commands run in the customer file's folder) is the one the fetches write
//! to (their `dest` is relative to the procedure, which names it).

use std::path::{Component, Path, PathBuf};

use crate::common_cli::runner;

/// The step that writes a file, the fetch that brings it, the file under C:\mig, and the
/// script (under playbooks/scripts) whose text names the file.
const FETCHED: &[(&str, &str, &str, &str)] = &[
    (
        "health-old",
        "fetch-dcdiag-old",
        r"logs\dcdiag-old.txt",
        "old-sbs.cmd",
    ),
    (
        "health-old",
        "fetch-repadmin-old",
        r"logs\repadmin-old.txt",
        "old-sbs.cmd",
    ),
    (
        "inventory-copy",
        "fetch-inventory-shares",
        r"inventory\shares.reg",
        "old-sbs.cmd",
    ),
    (
        "inventory-copy",
        "fetch-inventory-shares-query",
        r"inventory\shares-reg-query.txt",
        "old-sbs.cmd",
    ),
    (
        "inventory-copy",
        "fetch-inventory-acl",
        r"inventory\acl.txt",
        "old-sbs.cmd",
    ),
    (
        "inventory-copy",
        "fetch-inventory-users",
        r"inventory\users.csv",
        "old-sbs.cmd",
    ),
    (
        "inventory-copy",
        "fetch-inventory-store-sizes",
        r"inventory\store-sizes.txt",
        "old-sbs.cmd",
    ),
    (
        "dhcp-export-old",
        "fetch-dhcp-old",
        r"dhcp\dhcp-old.txt",
        "old-sbs.cmd",
    ),
    (
        "import-dhcp",
        "fetch-dhcp-new",
        r"dhcp\dhcp-new.txt",
        "prepare-dhcp-import.cmd",
    ),
    (
        "import-dhcp",
        "fetch-dhcp-import-log",
        r"dhcp\import.log",
        "import-dhcp.cmd",
    ),
    (
        "import-dhcp",
        "fetch-dhcp-imported",
        r"dhcp\dhcp-imported.txt",
        "import-dhcp.cmd",
    ),
];

fn plan(file: &str, start: &str) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let r = runner(
        &["plan", file, "--start", start, "--format", "json"],
        root,
        &[],
    );
    assert_eq!(r.code, 0, "{file}: {}", r.stderr);
    serde_json::from_str(&r.stdout).expect("the plan is JSON")
}

/// `a/b/../c` is `a/c`, without asking the file system.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The folders a `mkdir -p 'A' 'B'` command names.
fn quoted_words(command: &str) -> Vec<String> {
    command
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[track_caller]
fn assert_evidence(v: &serde_json::Value, netbios: &str) {
    let steps = v["steps"].as_array().expect("steps");
    let pos = |id: &str| {
        steps
            .iter()
            .position(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("the flagship has no step {id}"))
    };
    let folder = &steps[pos("evidence-folder")];
    assert_eq!(folder["targets"], serde_json::json!(["laptop"]));
    assert_eq!(v["targets"]["laptop"], "local", "{}", v["targets"]);
    let mkdir = folder["rendered"][0]["action"]["run"]["command"]
        .as_str()
        .expect("evidence-folder runs a command");
    // Local commands run in the customer file's folder.
    let made: Vec<PathBuf> = quoted_words(mkdir)
        .iter()
        .map(|d| lexical(&Path::new("playbooks/customers").join(d)))
        .collect();
    let root = PathBuf::from(format!("playbooks/customers/evidence/{netbios}"));
    for (writer, fetch, file, script) in FETCHED {
        assert!(pos(writer) < pos(fetch), "{fetch} must follow {writer}");
        assert!(pos("evidence-folder") < pos(fetch), "{fetch}");
        let s = &steps[pos(fetch)];
        assert_eq!(s["kind"], "fetch", "{fetch}");
        assert_eq!(s["business_hours"], "allow", "{fetch} only reads");
        let r = &s["rendered"][0]["action"]["fetch"];
        assert_eq!(r["path"], format!(r"C:\mig\{file}"), "{fetch}");
        let dest = root.join(file.replace('\\', "/"));
        assert_eq!(r["dest"], dest.display().to_string(), "{fetch}");
        let parent = dest.parent().expect("a folder").to_path_buf();
        assert!(
            made.contains(&parent),
            "evidence-folder makes {made:?}, not {}",
            parent.display()
        );
        let name = file.rsplit('\\').next().unwrap_or(file);
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("playbooks/scripts")
                .join(script),
        )
        .expect("the script");
        assert!(text.contains(name), "{script} does not write {name}");
    }
    let warnings = v["warnings"].as_array().expect("warnings");
    assert!(
        !warnings.iter().any(|w| {
            let step = w["step"].as_str().unwrap_or("");
            step == "evidence-folder" || step.starts_with("fetch-")
        }),
        "{warnings:#?}"
    );
}

#[test]
fn the_flagship_fetches_its_inventories_and_exports_into_each_customers_evidence_folder() {
    let acme = plan("playbooks/customers/acme.yaml", "2026-12-14T13:00:00-06:00");
    assert_evidence(&acme, "ACME");
    let bravo = plan(
        "playbooks/customers/bravo.yaml",
        "2026-12-14T13:00:00+01:00",
    );
    assert_evidence(&bravo, "BRAVO");
}
