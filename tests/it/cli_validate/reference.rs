//! The shipped playbooks validate, and the JSON schema and the format reference match what
//! `validate` checks.

use super::*;

#[test]
fn the_shipped_playbooks_and_fixture_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for p in [
        root.join("playbooks/customers/acme.yaml"),
        root.join("playbooks/demo.yaml"),
        root.join("playbooks/night.yaml"),
        fixture("small.yaml"),
    ] {
        Run::at(root)
            .args(["validate", p.to_str().unwrap()])
            .expect_exit(0)
            .expect_stdout_contains("valid")
            .run();
    }
}

#[test]
fn base_is_valid() {
    validate(BASE)
        .expect_exit(0)
        .expect_stdout_contains("c.yaml: valid (1 steps, 1 step x target pairs, 2 targets)")
        .run();
}

#[test]
fn schema_is_json_with_the_step_keys() {
    let r = Run::new().args(["schema"]).expect_exit(0).run();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let step = &v["$defs"]["RawStep"]["properties"];
    for k in [
        "id",
        "run",
        "check",
        "rollback",
        "estimate",
        "point_of_no_return",
        "deadline",
    ] {
        assert!(step.get(k).is_some(), "schema lacks step key {k}");
    }
}

/// Editors get one schema for both kinds of file: a playbook (or procedure) and a customer
/// file with its overrides.
#[test]
fn schema_covers_playbooks_and_customer_files() {
    let r = Run::new().args(["schema"]).expect_exit(0).run();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["anyOf"][0]["$ref"], "#/$defs/RawPlaybook");
    assert_eq!(v["anyOf"][1]["$ref"], "#/$defs/RawCustomer");
    let customer = &v["$defs"]["RawCustomer"]["properties"];
    assert!(customer["procedure"].is_object(), "{}", r.stdout);
    assert!(customer["overrides"].is_object(), "{}", r.stdout);
    assert!(v["$defs"]["RawOverride"]["properties"]["skip"].is_object());
    assert!(v["$defs"]["RawStep"]["properties"]["optional"].is_object());
}

/// GitHub's anchor for a heading: lowercase, punctuation other than `-` and `_` dropped,
/// spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn the_format_reference_links_only_to_its_own_headings_and_lists_what_validate_checks() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/playbook.md"))
            .unwrap();
    let anchors: Vec<String> = doc
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    for (i, _) in doc.match_indices("](#") {
        let rest = &doc[i + 3..];
        let target = &rest[..rest.find(')').unwrap()];
        assert!(
            anchors.iter().any(|a| a == target),
            "dead link #{target}; headings: {anchors:?}"
        );
    }
    let checks = &doc[doc.find("## What `validate` checks").unwrap()..];
    let checks = &checks[..checks.find("\n## ").unwrap()];
    assert!(
        checks.contains("`run`, `script`, `upload`, `copy`, `fetch`, `manual`, `reboot`"),
        "{checks}"
    );
    assert!(checks.contains("`changes: none`"), "{checks}");
    let durations = &doc[doc.find("## Durations").unwrap()..];
    assert!(durations.contains("`2 hours`") && durations.contains("`PT2H`"));
}
