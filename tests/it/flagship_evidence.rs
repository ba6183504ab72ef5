//! The flagship's evidence: the inventories and exports its steps write to C:\mig on new-sbs
//! are fetched to the runner's machine, into a folder per customer beside the customer files,
//! each after the step that writes it, without adding a review warning. A fetch makes its
//! folders itself, so the procedure runs nothing on the consultant's machine (their `dest` is
//! relative to the procedure, which names it).

use std::path::{Path, PathBuf};

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

#[track_caller]
fn assert_evidence(v: &serde_json::Value, netbios: &str) {
    let steps = v["steps"].as_array().expect("steps");
    let pos = |id: &str| {
        steps
            .iter()
            .position(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("the flagship has no step {id}"))
    };
    // Nothing runs on the consultant's machine: no local target, no step that makes folders.
    let targets = v["targets"].as_object().expect("targets");
    assert!(targets.values().all(|t| t != "local"), "{}", v["targets"]);
    assert!(
        !steps.iter().any(|s| s["id"] == "evidence-folder"),
        "a fetch makes its folders"
    );
    let root = PathBuf::from(format!("playbooks/customers/evidence/{netbios}"));
    for (writer, fetch, file, script) in FETCHED {
        assert!(pos(writer) < pos(fetch), "{fetch} must follow {writer}");
        let s = &steps[pos(fetch)];
        assert_eq!(s["kind"], "fetch", "{fetch}");
        assert_eq!(s["business_hours"], "allow", "{fetch} only reads");
        let r = &s["rendered"][0]["action"]["fetch"];
        assert_eq!(r["path"], format!(r"C:\mig\{file}"), "{fetch}");
        let dest = root.join(file.replace('\\', "/"));
        assert_eq!(r["dest"], dest.display().to_string(), "{fetch}");
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
            step.starts_with("fetch-")
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
