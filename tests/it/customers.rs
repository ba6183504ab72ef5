//! One procedure, many customers: a customer file names a shared procedure and supplies its
//! window, targets, vars and step overrides; `--var` and `--vars` add one-off values. Errors
//! point into the file that holds the value, the journal belongs to the customer's cutover,
//! and a reviewed plan covers every file.

use crate::common_cli::runner;
use std::path::{Path, PathBuf};

const PROCEDURE: &str = r#"# A shared procedure.
name: Shared procedure
vars:
  greeting: hello
  who: procedure
steps:
  - id: first
    on: box
    run: echo {{ greeting }} {{ who }} >> {{ dir }}/first.ledger
    estimate: 10m
  - id: fax
    on: box
    run: echo fax >> {{ dir }}/fax.ledger
    optional: true
    estimate: 5m
  - id: last
    on: box
    run: test -f {{ dir }}/go && echo last >> {{ dir }}/last.ledger
    estimate: 1h
"#;

fn customer(name: &str, overrides: &str) -> String {
    format!(
        r#"name: {name}
procedure: ../procedures/p.yaml
window:
  business_hours: []
vars:
  who: customer
targets:
  box: {{ transport: local }}
overrides:
{overrides}"#
    )
}

const OVERRIDES: &str = "  last: { estimate: 2h }\n  fax: { skip: true }\n";

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(customer_text: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("procedures")).unwrap();
        std::fs::create_dir_all(dir.path().join("customers")).unwrap();
        let s = Site { dir };
        s.write("procedures/p.yaml", PROCEDURE);
        s.write("customers/c1.yaml", customer_text);
        s
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path().join(name), text).unwrap();
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join(name)).unwrap_or_default()
    }

    fn dir_var(&self) -> String {
        format!("dir={}", self.path().display())
    }

    fn run(&self, args: &[&str]) -> crate::common_cli::Run {
        let dir = self.dir_var();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--var", dir.as_str()]);
        runner(&all, self.path(), &[])
    }

    /// The default journal of `customers/NAME.yaml`.
    fn journal(&self, name: &str) -> PathBuf {
        self.path()
            .join("customers/.runner")
            .join(format!("{name}.db"))
    }
}

#[test]
fn a_customer_file_runs_the_procedures_steps_with_its_own_vars_overrides_and_skips() {
    let s = Site::new(&customer("Customer One cutover", OVERRIDES));
    let r = s.run(&["plan", "customers/c1.yaml", "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let ids: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["first", "last"],
        "the skipped optional step is left out"
    );
    assert_eq!(v["name"], "Customer One cutover");
    assert_eq!(v["steps"][1]["estimate_secs"], 7200);
    let cmd = v["steps"][0]["rendered"][0]["action"]["run"]["command"]
        .as_str()
        .unwrap();
    assert!(cmd.starts_with("echo hello customer >> "), "{cmd}");

    let r = s.run(&["plan", "customers/c1.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let o = &r.stdout;
    assert!(
        o.contains("Procedure: procedures/p.yaml \"Shared procedure\""),
        "{o}"
    );
    assert!(
        o.contains("override: last estimate 2h (procedure: 1h) at customers/c1.yaml:10:21"),
        "{o}"
    );
    assert!(
        o.contains("skipped (optional): fax at customers/c1.yaml:11:16"),
        "{o}"
    );
    assert!(o.contains("est 2h (customer's, procedure 1h)"), "{o}");

    let r = s.run(&["validate", "customers/c1.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("customers/c1.yaml: valid (2 steps, 2 step x target pairs, 1 targets)\n  procedure: procedures/p.yaml"),
        "{}",
        r.stdout
    );

    let r = s.run(&["apply", "customers/c1.yaml"]);
    assert_eq!(r.code, 1, "`last` fails without its go file: {}", r.stderr);
    assert_eq!(s.read("first.ledger"), "hello customer\n");
    assert_eq!(s.read("fax.ledger"), "", "the skipped step never ran");
}

#[test]
fn errors_in_the_customer_file_and_the_procedure_are_reported_together_each_in_its_file() {
    let s = Site::new(&customer(
        "C",
        "  last: { estimate: 6 hours }\n  fist: { timeout: 1h }\n",
    ));
    s.write(
        "procedures/p.yaml",
        &PROCEDURE.replace("    estimate: 10m\n", "    estimat: 10m\n"),
    );
    let r = s.run(&["validate", "customers/c1.yaml"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let e = &r.stderr;
    // The unknown key in the procedure, at its own line and column.
    assert!(e.contains("unknown key `estimat` in a step"), "{e}");
    assert!(e.contains("--> procedures/p.yaml:10:5"), "{e}");
    assert!(e.contains("10 |     estimat: 10m"), "{e}");
    // The customer's wrong override, in the customer file.
    assert!(e.contains("`6 hours` is not a duration"), "{e}");
    assert!(e.contains("--> customers/c1.yaml:10:21"), "{e}");
    assert!(e.contains("--> customers/c1.yaml:11:3"), "{e}");
    assert!(e.contains("the procedure has no step `fist`"), "{e}");
    assert!(e.contains("did you mean `first`?"), "{e}");
    assert!(!s.journal("c1").exists(), "nothing was written");
}

#[test]
fn only_steps_the_procedure_marks_optional_may_be_skipped() {
    let s = Site::new(&customer("C", "  first: { skip: true }\n"));
    let r = s.run(&["plan", "customers/c1.yaml"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("error: step `first` is not optional in the procedure"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("--> customers/c1.yaml:10:18"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("`first` is at procedures/p.yaml:7:9"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_customer_file_is_checked_for_its_own_keys() {
    let text = customer("C", OVERRIDES).replace("window:", "steps: []\nwindwo: {}\nwindow:");
    let s = Site::new(&text);
    let r = s.run(&["validate", "customers/c1.yaml"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("a customer file has no `steps`: they come from its procedure"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("unknown key `windwo` in the customer file"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("did you mean `window`?"), "{}", r.stderr);

    let s = Site::new(&customer("C", OVERRIDES).replace("../procedures/p.yaml", "p.yaml"));
    let r = s.run(&["validate", "customers/c1.yaml"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("cannot read the procedure"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("--> customers/c1.yaml:2:12"),
        "{}",
        r.stderr
    );
}

#[test]
fn variables_given_on_the_command_line_win_and_are_shown_in_the_plan() {
    let s = Site::new(&customer("C", OVERRIDES));
    s.write("extra.yaml", "greeting: hi\nwho: file\n");
    let r = s.run(&[
        "plan",
        "customers/c1.yaml",
        "--vars",
        "extra.yaml",
        "--var",
        "who=cli",
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let cmd = v["steps"][0]["rendered"][0]["action"]["run"]["command"]
        .as_str()
        .unwrap();
    assert!(cmd.starts_with("echo hi cli >> "), "{cmd}");

    let r = s.run(&[
        "plan",
        "customers/c1.yaml",
        "--vars",
        "extra.yaml",
        "--var",
        "who=cli",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Vars file: extra.yaml"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("var given on the command line: greeting = hi (extra.yaml)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("var given on the command line: who = cli (--var)"),
        "{}",
        r.stdout
    );

    let r = s.run(&["plan", "customers/c1.yaml", "--var", "who"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("`--var who` has no `=`"), "{}", r.stderr);

    s.write("bad.yaml", "- a\n- b\n");
    let r = s.run(&["plan", "customers/c1.yaml", "--vars", "bad.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("a vars file must be a mapping of variable names to values"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--> bad.yaml:1:1"), "{}", r.stderr);
}

/// The journal belongs to the customer's cutover: a fix to the shared procedure keeps the
/// customer's progress (only a step whose rendered command changed shows as changed), and
/// two customers of one procedure keep separate journals.
#[test]
fn a_procedure_fix_keeps_each_customers_progress_and_shows_a_changed_step_as_changed() {
    let s = Site::new(&customer("Customer One cutover", OVERRIDES));
    s.write("customers/c2.yaml", &customer("Customer Two cutover", ""));
    let r = s.run(&["apply", "customers/c1.yaml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(s.read("first.ledger"), "hello customer\n");

    // A fix elsewhere in the procedure: `first` is unchanged and not run again.
    s.write(
        "procedures/p.yaml",
        &PROCEDURE.replace("# A shared procedure.", "# A shared procedure, fixed."),
    );
    std::fs::write(s.path().join("go"), "").unwrap();
    let r = s.run(&["apply", "customers/c1.yaml"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        s.read("first.ledger"),
        "hello customer\n",
        "kept, not rerun"
    );
    assert_eq!(s.read("last.ledger"), "last\n");

    // The second customer's journal is its own: everything runs for it.
    let r = s.run(&["apply", "customers/c2.yaml"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(s.read("first.ledger"), "hello customer\nhello customer\n");
    assert_eq!(
        s.read("fax.ledger"),
        "fax\n",
        "c2 does not skip the fax step"
    );
    assert!(s.journal("c1").exists() && s.journal("c2").exists());

    // A fix that changes what `first` runs: shown as changed, as for any playbook.
    s.write(
        "procedures/p.yaml",
        &PROCEDURE.replace("echo {{ greeting }}", "echo  {{ greeting }}"),
    );
    let r = s.run(&["apply", "customers/c1.yaml"]);
    assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("`first` on `box`"), "{}", r.stderr);
    assert!(r.stderr.contains("--accept-changed"), "{}", r.stderr);
    assert_eq!(s.read("first.ledger"), "hello customer\nhello customer\n");
}

#[test]
fn a_reviewed_plan_covers_the_procedure_and_the_given_variables() {
    let s = Site::new(&customer("C", OVERRIDES));
    std::fs::write(s.path().join("go"), "").unwrap();
    let r = s.run(&["plan", "customers/c1.yaml", "--out", "r.json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    s.write(
        "procedures/p.yaml",
        &PROCEDURE.replace("echo {{ greeting }}", "echo  {{ greeting }}"),
    );
    let r = s.run(&["apply", "customers/c1.yaml", "--plan", "r.json"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("the procedure procedures/p.yaml changed"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("step `first` on `box`"), "{}", r.stderr);
    assert_eq!(s.read("first.ledger"), "", "nothing ran");

    s.write("procedures/p.yaml", PROCEDURE);
    let r = s.run(&[
        "apply",
        "customers/c1.yaml",
        "--plan",
        "r.json",
        "--var",
        "who=someone",
    ]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the variables given on the command line differ"),
        "{}",
        r.stderr
    );
    assert_eq!(s.read("first.ledger"), "", "nothing ran");

    let r = s.run(&["apply", "customers/c1.yaml", "--plan", "r.json"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(s.read("first.ledger"), "hello customer\n");
}

/// The shipped example: ACME and a second customer in another time zone, with other holidays
/// and Saturday hours, plan from the same procedure without editing it.
#[test]
fn the_two_example_customers_plan_from_one_procedure() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plan = |file: &str, start: &str| {
        let r = runner(
            &["plan", file, "--start", start, "--format", "json"],
            root,
            &[],
        );
        assert_eq!(r.code, 0, "{file}: {}", r.stderr);
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()
    };
    let acme = plan("playbooks/customers/acme.yaml", "2026-12-14T13:00:00-06:00");
    let bravo = plan(
        "playbooks/customers/bravo.yaml",
        "2026-12-14T13:00:00+01:00",
    );
    assert_eq!(acme["timezone"], "America/Chicago");
    assert_eq!(bravo["timezone"], "Europe/Berlin");
    let proc_of = |v: &serde_json::Value| v["composition"]["procedure"]["path"].clone();
    assert_eq!(
        proc_of(&acme),
        "playbooks/procedures/sbs2000-to-sbs2003.yaml"
    );
    assert_eq!(proc_of(&acme), proc_of(&bravo));
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(ids(&acme).contains(&"printers-and-fax".to_string()));
    assert!(!ids(&bravo).contains(&"printers-and-fax".to_string()));
    assert_eq!(ids(&acme).len(), ids(&bravo).len() + 1);
    for r in [&acme, &bravo] {
        assert!(
            !r["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["code"] == "deadline-missed"),
            "{}",
            r["name"]
        );
    }
}

#[test]
fn a_syntax_error_in_the_procedure_points_into_the_procedure() {
    let s = Site::new(&customer("C", OVERRIDES));
    s.write(
        "procedures/p.yaml",
        &PROCEDURE.replace("    estimate: 10m\n", "    estimate: 10m\n\tretries: 1\n"),
    );
    let r = s.run(&["validate", "customers/c1.yaml"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("a tab in the indentation"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("--> procedures/p.yaml:11:1"),
        "{}",
        r.stderr
    );
    assert!(!s.journal("c1").exists());
}
