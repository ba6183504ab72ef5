//! The flagship's scripts are the procedure's, shared by every customer: none of them names a
//! customer's domain, directory, addresses or name. What they need to know about the customer
//! reaches new-sbs through one step, customer-settings, which writes C:\mig\bin\customer.cmd
//! from the customer file's vars; every script that reads a setting loads that file first.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common_cli::runner;

const CUSTOMERS: &[&str] = &["acme", "bravo"];
/// The customer vars that must never be written into a shared script.
const CUSTOMER_VARS: &[&str] = &[
    "customer",
    "netbios",
    "exchange_org",
    "domain",
    "domain_dn",
    "old_ip",
    "new_ip",
    "router_ip",
    "dhcp_scope",
    "dns_forwarders",
    "netlogon",
    "policies",
];
const SETTINGS_FILE: &str = r"C:\mig\bin\customer.cmd";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn vars(customer: &str) -> serde_yaml_ng::Mapping {
    let path = root().join(format!("playbooks/customers/{customer}.yaml"));
    let text = std::fs::read_to_string(&path).expect("the customer file is readable");
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).expect("the customer file is YAML");
    doc["vars"]
        .as_mapping()
        .expect("the customer file has vars")
        .clone()
}

fn var(vars: &serde_yaml_ng::Mapping, name: &str) -> String {
    match vars.get(name) {
        Some(serde_yaml_ng::Value::String(s)) => s.clone(),
        other => panic!("var {name}: {other:?}"),
    }
}

/// What identifies a customer in a text: its vars, and its network (the scope without its
/// last number, e.g. "192.168.16.").
fn identifying(customer: &str) -> Vec<String> {
    let vars = vars(customer);
    let mut out: Vec<String> = CUSTOMER_VARS.iter().map(|v| var(&vars, v)).collect();
    let scope = var(&vars, "dhcp_scope");
    let net = &scope[..=scope.rfind('.').expect("dhcp_scope is an IPv4 address")];
    out.push(net.to_string());
    out.sort();
    out.dedup();
    out
}

/// The files in a folder of playbooks/, with their text.
fn files_in(folder: &str) -> Vec<(PathBuf, String)> {
    let dir = root().join("playbooks").join(folder);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .expect("the folder is readable")
        .map(|e| e.expect("a directory entry").path())
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("a shared file is text");
            (p, text)
        })
        .collect();
    out.sort();
    out
}

fn scripts() -> Vec<(PathBuf, String)> {
    let out = files_in("scripts");
    assert!(out.len() > 10, "{out:?}");
    out
}

fn plan(customer: &str) -> serde_json::Value {
    let file = format!("playbooks/customers/{customer}.yaml");
    let r = runner(&["plan", &file, "--format", "json"], root(), &[]);
    assert_eq!(r.code, 0, "{file}: {}", r.stderr);
    serde_json::from_str(&r.stdout).expect("the plan is JSON")
}

/// The command of the step customer-settings, as the plan renders it for new-sbs.
fn settings_command(plan: &serde_json::Value) -> String {
    let step = plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == "customer-settings")
        .expect("the plan has the step customer-settings");
    let rendered = &step["rendered"][0];
    assert_eq!(rendered["target"], "new-sbs");
    let command = rendered["action"]["run"]["command"]
        .as_str()
        .expect("customer-settings is a run step");
    assert!(command.contains(SETTINGS_FILE), "{command}");
    command.to_string()
}

/// The names `MIG_X` a text uses as `%MIG_X%`, `%MIG_X:...%`, `!MIG_X!` or (in PowerShell)
/// `$env:MIG_X`, with the byte offset of the first use of each.
fn settings_used(text: &str) -> Vec<(String, usize)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (at, _) in text.match_indices("MIG_") {
        let before = &text[..at];
        if !(before.ends_with(['%', '!']) || before.ends_with("$env:")) {
            continue;
        }
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if seen.insert(name.clone()) {
            out.push((name, at));
        }
    }
    out
}

/// The scripts, and the files beside them (the dcpromo answer file has placeholders).
#[test]
fn no_script_or_shared_file_names_a_customer() {
    let mut found = Vec::new();
    let shared = files_in("files");
    assert!(
        shared
            .iter()
            .any(|(p, _)| p.ends_with("dcpromo-replica.txt")),
        "{shared:?}"
    );
    for (path, text) in scripts().into_iter().chain(shared) {
        let lower = text.to_lowercase();
        for customer in CUSTOMERS {
            for needle in identifying(customer) {
                let needle = needle.to_lowercase();
                for (n, line) in lower.lines().enumerate() {
                    if line.contains(&needle) {
                        found.push(format!("{}:{}: {needle}", path.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "customer values in shared files:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_setting_a_script_reads_is_loaded_first_and_written_by_customer_settings() {
    let command = settings_command(&plan("acme"));
    let mut used_anywhere = 0;
    for (path, text) in scripts() {
        let used = settings_used(&text);
        let Some(first) = used.iter().map(|(_, at)| *at).min() else {
            continue;
        };
        used_anywhere += 1;
        let call = format!("call {SETTINGS_FILE}");
        let loaded = text.find(&call);
        assert!(
            loaded.is_some_and(|at| at < first),
            "{} uses {used:?} before `{call}`",
            path.display()
        );
        let missing = format!("if not exist {SETTINGS_FILE}");
        assert!(
            text.contains(&missing),
            "{} does not stop when the file is missing",
            path.display()
        );
        for (name, _) in used {
            assert!(
                command.contains(&format!("@set \"{name}=")),
                "{} reads {name}, which customer-settings does not write:\n{command}",
                path.display()
            );
        }
    }
    assert!(used_anywhere >= 10, "{used_anywhere} scripts read settings");
}

#[test]
fn each_customers_plan_writes_its_own_settings_and_bravos_names_nothing_of_acmes() {
    let expected = [
        ("MIG_NETBIOS", "netbios"),
        ("MIG_DOMAIN", "domain"),
        ("MIG_DN", "domain_dn"),
        ("MIG_OLD", "old_name"),
        ("MIG_NEW", "new_name"),
        ("MIG_OLD_IP", "old_ip"),
        ("MIG_NEW_IP", "new_ip"),
        ("MIG_SCOPE", "dhcp_scope"),
        ("MIG_NETLOGON", "netlogon"),
        ("MIG_SHARES", "data_shares"),
        ("MIG_DATA", "data_root"),
    ];
    for customer in CUSTOMERS {
        let vars = vars(customer);
        let command = settings_command(&plan(customer));
        for (setting, name) in expected {
            let line = format!("@set \"{setting}={}\"", var(&vars, name));
            assert!(
                command.contains(&line),
                "{customer}: no `{line}` in\n{command}"
            );
        }
    }
    let bravo = plan("bravo");
    let command = settings_command(&bravo);
    assert!(command.contains(r#"@set "MIG_DATA=E:\Data""#), "{command}");
    let text = bravo.to_string().to_lowercase();
    for needle in identifying("acme") {
        let needle = needle.to_lowercase();
        assert!(
            !text.contains(&needle),
            "Bravo's plan names ACME's {needle}"
        );
    }
    assert!(!text.contains("acme"), "Bravo's plan names ACME");
}

/// The flagship's fetches write beside the customer files although the procedure names them:
/// `validate` says where a fetch's relative `dest` is taken from, in a procedure too.
#[test]
fn validate_says_a_fetch_dest_is_relative_to_the_file_that_names_it() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let procedure = "name: p\ntargets:\n  here: { transport: local }\nsteps:\n  - id: get\n    on: here\n    fetch: { path: /etc/hostname, dest: '' }\n";
    std::fs::create_dir(dir.path().join("procedures")).expect("procedures/");
    std::fs::write(dir.path().join("procedures/p.yaml"), procedure).expect("the procedure");
    let customer =
        "name: c\nprocedure: procedures/p.yaml\nwindow:\n  timezone: UTC\n  business_hours: []\n";
    std::fs::write(dir.path().join("c.yaml"), customer).expect("the customer file");
    let r = runner(&["validate", "c.yaml"], dir.path(), &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("procedures/p.yaml"), "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "relative to the folder of the file that names the step (in a procedure, the procedure's)"
        ),
        "{}",
        r.stderr
    );
}
