//! `runner validate` on good and bad playbooks: exit codes, positions, messages, and that an
//! invalid playbook changes nothing.

use crate::common_cli;
use crate::common_cli::{fixture, runner};
use std::path::Path;

const BASE: &str = r#"name: T
window:
  timezone: America/Chicago
  business_hours:
    - days: mon-fri
      from: "07:30"
      to: "18:00"
  margin: 15m
vars:
  drive: 'D:'
targets:
  web:
    transport: ssh
    host: 127.0.0.1
    user: admin
  db:
    transport: local
groups:
  all: [web, db]
steps:
  - id: first
    on: web
    run: echo {{ drive }}
"#;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Validates `text` as `c.yaml` in a fresh folder; returns the run and the folder.
fn validate(text: &str) -> (common_cli::Run, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "c.yaml", text);
    let r = runner(&["validate", "c.yaml"], dir.path(), &[]);
    (r, dir)
}

#[test]
fn the_shipped_playbooks_and_fixture_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for p in [
        root.join("playbooks/customers/acme.yaml"),
        root.join("playbooks/demo.yaml"),
        root.join("playbooks/night.yaml"),
        fixture("small.yaml"),
    ] {
        let r = runner(&["validate", p.to_str().unwrap()], root, &[]);
        assert_eq!(r.code, 0, "{}: {}{}", p.display(), r.stdout, r.stderr);
        assert!(r.stdout.contains("valid"), "{}", r.stdout);
    }
}

#[test]
fn base_is_valid() {
    let (r, _d) = validate(BASE);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("c.yaml: valid (1 steps, 1 step x target pairs, 2 targets)"),
        "{}",
        r.stdout
    );
}

#[test]
fn unknown_key_names_file_line_column_and_suggests() {
    let text = BASE.replace(
        "    run: echo {{ drive }}",
        "    run: echo {{ drive }}\n    rollbak: echo undo",
    );
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("unknown key `rollbak` in a step"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("c.yaml:24:5"), "{}", r.stderr);
    assert!(
        r.stderr.contains("24 |     rollbak: echo undo"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("   |     ^^^^^^^\n"), "{}", r.stderr);
    assert!(
        r.stderr.contains("did you mean `rollback`?"),
        "{}",
        r.stderr
    );
}

#[test]
fn words_from_other_tools_are_translated() {
    let text = BASE.replace("    run: echo {{ drive }}", "    comand: echo hi");
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("did you mean `command`? That is called `run`"),
        "{}",
        r.stderr
    );
}

#[test]
fn several_errors_are_reported_at_once_in_file_order() {
    let text = BASE
        .replace("America/Chicago", "America/Chicagoo")
        .replace("on: web", "on: wbe")
        .replace("{{ drive }}", "{{ driv }}");
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2);
    let tz = r
        .stderr
        .find("`America/Chicagoo` is not a known IANA time zone")
        .expect(&r.stderr);
    let on = r
        .stderr
        .find("`wbe` is neither a target nor a group")
        .expect(&r.stderr);
    assert!(tz < on);
    assert!(r.stderr.contains("did you mean `America/Chicago`?"));
    assert!(r.stderr.contains("did you mean `web`?"));
    assert!(
        r.stderr
            .contains("2 errors found; nothing was run and nothing was written"),
        "{}",
        r.stderr
    );
}

#[test]
fn undefined_template_variable() {
    let (r, _d) = validate(&BASE.replace("{{ drive }}", "{{ driv }}"));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("`run` uses undefined variable `driv` for target `web`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("did you mean `drive`?"), "{}", r.stderr);
}

#[test]
fn target_vars_and_target_fields_are_available() {
    let text = BASE
        .replace(
            "    transport: local\n",
            "    transport: local\n    vars:\n      root: /srv\n",
        )
        .replace(
            "    on: web\n    run: echo {{ drive }}",
            "    on: db\n    run: echo {{ root }} {{ target.name }}",
        );
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn a_playbook_saved_with_a_byte_order_mark_is_valid() {
    // Windows editors write a UTF-8 byte order mark at the start of the file.
    let (r, dir) = validate(&format!("\u{feff}{BASE}"));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("valid"), "{}", r.stdout);
    let plan = runner(&["plan", "c.yaml"], dir.path(), &[]);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
}

#[test]
fn a_literal_secret_is_refused_without_echoing_it() {
    let text = BASE.replace(
        "    user: admin\n",
        "    user: admin\n    password: Sup3rS3cret!\n",
    );
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("`password` is a literal secret"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("{ env: VARIABLE }"), "{}", r.stderr);
    assert!(!r.stderr.contains("Sup3rS3cret!") && !r.stdout.contains("Sup3rS3cret!"));
}

#[test]
fn bad_window_values_each_get_an_error() {
    let text = BASE
        .replace("days: mon-fri", "days: mon-fry")
        .replace("\"18:00\"", "\"25:00\"")
        .replace("margin: 15m", "margin: soon");
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("`mon-fry` is not a day or a range of days"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("`25:00` is not a time of day"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("`soon` is not a duration"),
        "{}",
        r.stderr
    );
}

#[test]
fn business_hours_without_timezone() {
    let (r, _d) = validate(&BASE.replace("  timezone: America/Chicago\n", ""));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("the window has business hours but no `timezone`"),
        "{}",
        r.stderr
    );
}

#[test]
fn steps_references_and_ids() {
    let text = format!(
        "{BASE}  - id: first\n    on: all\n    run: x\n  - id: Bad_Id\n    on: all\n    run: x\n  - id: dl\n    on: all\n    run: x\n    deadline: {{ after: later, within: 21d }}\n  - id: later\n    on: all\n    run: x\n"
    );
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("step id `first` is used twice"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("`Bad_Id` is not a valid step id"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("`deadline.after` names `later`, which is not an earlier step"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("`later` comes later in the playbook"),
        "{}",
        r.stderr
    );
}

#[test]
fn exactly_one_action() {
    let text = format!(
        "{BASE}  - id: two\n    on: web\n    run: a\n    manual: b\n  - id: none\n    on: web\n"
    );
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("step `two` has both `run` and `manual`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("step `none` has nothing to do"),
        "{}",
        r.stderr
    );
}

#[test]
fn missing_script_and_upload_files() {
    let text = format!(
        "{BASE}  - id: s\n    on: web\n    script: scripts/nope.sh\n  - id: u\n    on: web\n    upload: {{ src: files/nope.bin, dest: /tmp/x }}\n"
    );
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("cannot read `scripts/nope.sh`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("cannot read `files/nope.bin`"),
        "{}",
        r.stderr
    );
}

/// Validates `text` as `c.yaml` in a fresh folder with the clock set to `now` (RUNNER_NOW).
fn validate_at(text: &str, now: &str) -> common_cli::Run {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "c.yaml", text);
    runner(&["validate", "c.yaml"], dir.path(), &[("RUNNER_NOW", now)])
}

#[test]
fn a_step_that_could_never_fit_between_business_hours() {
    // Weeknights are 13h30m; the weekend gap is 61h30m. 3d cannot fit anywhere.
    let text = BASE.replace("    run: echo {{ drive }}", "    run: x\n    estimate: 3d");
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("step `first` cannot start within 14 days from"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("(the current time)"), "{}", r.stderr);
    assert!(r.stderr.contains("(3d15m)"), "{}", r.stderr);
    assert!(r.stderr.contains("the longest is 2d13h30m"), "{}", r.stderr);
    // The same step is fine when it is allowed during business hours.
    let ok = BASE.replace(
        "    run: echo {{ drive }}",
        "    run: x\n    estimate: 3d\n    business_hours: allow",
    );
    assert_eq!(validate(&ok).0.code, 0);
}

#[test]
fn transport_specific_keys_are_checked() {
    let text = BASE
        .replace(
            "    transport: local\n",
            "    transport: local\n    host: x\n",
        )
        .replace("    user: admin\n", "    user: admin\n    https: true\n");
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("a local target has no `host`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("`https` applies only to winrm targets"),
        "{}",
        r.stderr
    );
}

#[test]
fn keepalive_applies_to_ssh_targets_only() {
    let text = BASE.replace(
        "    transport: local\n",
        "    transport: local\n    keepalive: 15s\n  \
         win:\n    transport: winrm\n    host: h\n    user: u\n    password: { env: P }\n    keepalive: 15s\n",
    );
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        r.stderr
            .matches("`keepalive` applies only to ssh targets")
            .count(),
        2,
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("c.yaml:18:16"), "{}", r.stderr);
    assert!(r.stderr.contains("c.yaml:24:16"), "{}", r.stderr);
    assert!(
        r.stderr.contains("use `transport: ssh` for `win`"),
        "{}",
        r.stderr
    );
}

#[test]
fn keepalive_is_whole_seconds_from_one_second() {
    for bad in ["0s", "500ms", "1.5s", "2h"] {
        let text = BASE.replace(
            "    user: admin\n",
            &format!("    user: admin\n    keepalive: {bad}\n"),
        );
        let (r, _d) = validate(&text);
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
        assert!(r.stderr.contains("c.yaml:16:16"), "{bad}: {}", r.stderr);
        assert!(r.stderr.contains(bad), "{bad}: {}", r.stderr);
        assert!(
            r.stderr.contains("whole seconds from 1s to 1h"),
            "{bad}: {}",
            r.stderr
        );
    }
    for good in ["1s", "2m", "1h"] {
        let text = BASE.replace(
            "    user: admin\n",
            &format!("    user: admin\n    keepalive: {good}\n"),
        );
        let (r, _d) = validate(&text);
        assert_eq!(r.code, 0, "{good}: {}", r.stderr);
    }
}

#[test]
fn yaml_syntax_and_type_errors_have_positions() {
    let (r, _d) = validate("name: [unclosed\nsteps: x\n");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("YAML syntax error"), "{}", r.stderr);
    assert!(r.stderr.contains("c.yaml:"), "{}", r.stderr);

    let (r, _d) =
        validate(&BASE.replace("  margin: 15m\n", "  margin: 15m\n  when_closed: later\n"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("when_closed"), "{}", r.stderr);
    assert!(r.stderr.contains("c.yaml:9:"), "{}", r.stderr);
}

#[test]
fn an_alias_bomb_is_refused() {
    let mut text = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut prev = 'a';
    for c in 'b'..='j' {
        text.push_str(&format!(
            "{c}: &{c} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
        prev = c;
    }
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn garbage_input_never_panics() {
    for text in [
        "",
        "---\n",
        "- a\n- b\n",
        "name: 3\nwindow: 4\nsteps: 5\n",
        "\u{0}\u{1}",
        "steps:\n  - {}\n",
        "{{{{",
    ] {
        let (r, _d) = validate(text);
        assert_eq!(r.code, 2, "input {text:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
}

#[test]
fn invalid_playbooks_write_nothing_even_for_apply() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "c.yaml",
        &BASE.replace("on: web", "on: nowhere"),
    );
    for cmd in [
        vec!["validate", "c.yaml"],
        vec!["plan", "c.yaml"],
        vec!["apply", "c.yaml"],
    ] {
        let r = runner(&cmd, dir.path(), &[]);
        assert_eq!(r.code, 2, "{cmd:?}: {}", r.stderr);
    }
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("c.yaml")]);
}

#[test]
fn a_missing_file_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let r = runner(&["validate", "nope.yaml"], dir.path(), &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("nope.yaml"), "{}", r.stderr);
}

#[test]
fn schema_is_json_with_the_step_keys() {
    let r = runner(&["schema"], Path::new("."), &[]);
    assert_eq!(r.code, 0);
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
    let r = runner(&["schema"], Path::new("."), &[]);
    assert_eq!(r.code, 0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["anyOf"][0]["$ref"], "#/$defs/RawPlaybook");
    assert_eq!(v["anyOf"][1]["$ref"], "#/$defs/RawCustomer");
    let customer = &v["$defs"]["RawCustomer"]["properties"];
    assert!(customer["procedure"].is_object(), "{}", r.stdout);
    assert!(customer["overrides"].is_object(), "{}", r.stdout);
    assert!(v["$defs"]["RawOverride"]["properties"]["skip"].is_object());
    assert!(v["$defs"]["RawStep"]["properties"]["optional"].is_object());
}

#[test]
fn reboot_and_detach_keys_are_checked() {
    let text = format!(
        "{BASE}  - id: r\n    on: web\n    reboot: {{ timeout: soon }}\n  - id: u\n    on: web\n    upload: {{ src: c.yaml, dest: /tmp/x }}\n    detach: true\n    reboot_on: [3010]\n  - id: ok\n    on: web\n    run: x\n    reboot_on: [100]\n    detach: false\n"
    );
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("`soon` is not a duration"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("only `run` steps can run detached"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("`reboot_on` applies to `run` and `script` steps"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("steps[4]"),
        "the valid step is not blamed: {}",
        r.stderr
    );

    let (r, _d) = validate(&format!(
        "{BASE}  - id: r\n    on: web\n    reboot: {{ timout: 5m }}\n"
    ));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("unknown key `timout` in reboot")
            && r.stderr.contains("did you mean `timeout`?"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_wrong_type_names_what_is_valid_not_an_internal_type() {
    // `reboot: true` reads naturally but the key takes a mapping.
    let text = format!("{BASE}  - id: boot\n    on: web\n    reboot: true\n");
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("c.yaml:26:13"), "{}", r.stderr);
    assert!(
        r.stderr.contains("`reboot: { timeout: DURATION }`"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("Raw"), "{}", r.stderr);
}

#[test]
fn a_wrong_type_quotes_the_value_as_written() {
    // The readable names replace serde's, not words that happen to be in the playbook.
    let text = BASE.replace(
        "window:\n  timezone: America/Chicago\n  business_hours:\n    - days: mon-fri\n      from: \"07:30\"\n      to: \"18:00\"\n  margin: 15m\n",
        "window: struct RawStep\n",
    );
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("invalid type: string \"struct RawStep\", expected the window (a mapping)"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_value_of_no_accepted_shape_names_the_shapes() {
    // `days` with no value is null, which none of the accepted shapes of `days` is.
    let text = BASE.replace("    - days: mon-fri\n", "    - days:\n");
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("expected a day (mon), a range (mon-fri) or a list ([mon, wed])"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("Raw"), "{}", r.stderr);
}

/// BASE's window (weekdays 07:30-18:00 in Chicago, margin 15m) with these holidays, and one
/// step of this estimate.
fn long_step(estimate: &str, holidays: &str) -> String {
    BASE.replace(
        "  margin: 15m\n",
        &format!("  margin: 15m\n  holidays: {holidays}\n"),
    )
    .replace(
        "    run: echo {{ drive }}",
        &format!("    run: x\n    estimate: {estimate}"),
    )
}

#[test]
fn a_step_that_fits_only_a_holiday_weekend_is_valid() {
    // Thursday 24, Friday 25 and Monday 28 December are holidays: from Wednesday 23 at 18:00
    // nothing happens until Tuesday 29 at 07:30, 133h30m. An 80h step fits only then.
    let text = long_step("80h", "[2026-12-24, 2026-12-25, 2026-12-28]");
    for now in [
        "2026-12-20T12:00:00Z", // the holidays are within the next 14 days
        "2026-12-01T12:00:00Z", // they are listed, further ahead: still checked against them
    ] {
        let r = validate_at(&text, now);
        assert_eq!(r.code, 0, "RUNNER_NOW={now}: {}{}", r.stdout, r.stderr);
    }
    // The plan places it over the holidays.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "c.yaml", &text);
    let r = runner(
        &["plan", "c.yaml", "--start", "2026-12-21T18:00:00-06:00"],
        dir.path(),
        &[],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Wed 23 Dec 18:00"), "{}", r.stdout);
    // Once the holidays are past, no gap is long enough, and the message says from when it
    // looked and for how long.
    let r = validate_at(&text, "2027-01-04T12:00:00Z");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(
            "step `first` cannot start within 14 days from Mon 4 Jan 2027 06:00 CST (RUNNER_NOW)"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("(3d8h15m)"), "{}", r.stderr);
}

#[test]
fn a_step_that_fits_only_the_longer_autumn_weekend_is_valid_before_it() {
    // Chicago falls back on Sunday 1 November 2026: Friday 30 October 18:00 CDT to Monday
    // 2 November 07:30 CST is 62h30m, an hour more than any other weekend. 62h plus the
    // 15m margin fits only that weekend.
    let text = long_step("62h", "[]");
    let r = validate_at(&text, "2026-10-26T12:00:00Z");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // After it, the next such weekend is a year away.
    let r = validate_at(&text, "2026-11-03T12:00:00Z");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("cannot start within 14 days from Tue 3 Nov 2026 06:00 CST"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("the longest is 2d13h30m"), "{}", r.stderr);
}

#[test]
fn every_day_name_the_window_reads_is_valid() {
    for days in ["tues", "thurs-fri", "Thur", "[mon, tues, wednesday]"] {
        let text = BASE.replace("days: mon-fri", &format!("days: {days}"));
        let (r, _d) = validate(&text);
        assert_eq!(r.code, 0, "days: {days}: {}{}", r.stdout, r.stderr);
    }
}

#[test]
fn type_errors_in_separate_keys_are_all_reported_at_once() {
    // Six mistakes in six keys: one run of validate shows every one of them.
    let text = BASE.replace("    transport: ssh\n", "    transport: sshh\n").replace(
        "    run: echo {{ drive }}\n",
        "    run: echo {{ drive }}\n    point_of_no_return: yes\n    estimate: 1mo\n    retries: many\n    timeout: 2 hours\n    comand: x\n",
    );
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let e = &r.stderr;
    assert!(e.contains("6 errors found"), "{e}");
    for at in [
        "c.yaml:13:16",
        "c.yaml:24:25",
        "c.yaml:25:15",
        "c.yaml:26:14",
        "c.yaml:27:14",
        "c.yaml:28:5",
    ] {
        assert!(e.contains(at), "{at} missing in\n{e}");
    }
    assert!(e.contains("write `point_of_no_return: true`"), "{e}");
    assert!(e.contains("did you mean `ssh`?"), "{e}");
    assert!(e.contains("`many` is not a whole number"), "{e}");
    assert!(!e.contains("jiff"), "{e}");
    assert!(!e.contains("SpanRelativeTo"), "{e}");
    // In file order, each with its source line and a caret.
    assert!(
        e.find("c.yaml:13:16").unwrap() < e.find("c.yaml:28:5").unwrap(),
        "{e}"
    );
    assert!(e.contains("24 |     point_of_no_return: yes\n"), "{e}");
}

#[test]
fn durations_take_only_the_documented_form() {
    for bad in [
        "2 hours", "1.5h", "PT2H", "1mo", "1h 30m", "30m1h", "2w", "h",
    ] {
        let text = BASE.replace(
            "    run: echo {{ drive }}\n",
            &format!("    run: echo {{{{ drive }}}}\n    estimate: \"{bad}\"\n"),
        );
        let (r, _d) = validate(&text);
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
        assert!(r.stderr.contains("c.yaml:24:15"), "{bad}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("`{bad}` is not a duration")),
            "{bad}: {}",
            r.stderr
        );
        assert!(
            r.stderr
                .contains("write durations like 90s, 15m, 1h30m or 2d"),
            "{bad}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("jiff"), "{bad}: {}", r.stderr);
    }
    for good in ["90s", "15m", "1h30m", "2d", "0s", "1d2h3m4s"] {
        let text = BASE.replace(
            "    run: echo {{ drive }}\n",
            &format!("    run: echo {{{{ drive }}}}\n    estimate: {good}\n"),
        );
        let (r, _d) = validate(&text);
        assert_eq!(r.code, 0, "{good}: {}", r.stderr);
    }
}

#[test]
fn a_tab_in_the_indentation_points_at_the_tab_and_says_spaces() {
    let text = BASE.replace("    run: echo", "\trun: echo");
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let e = &r.stderr;
    assert!(e.contains("c.yaml:23:1"), "{e}");
    assert!(e.contains("tab"), "{e}");
    assert!(e.contains("indent with spaces"), "{e}");
    assert!(e.contains("stops at the first syntax error"), "{e}");
}

#[test]
fn bad_indentation_is_explained_in_plain_words() {
    let text = BASE.replace("    run: echo", "     run: echo");
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let e = &r.stderr;
    assert!(!e.contains("not allowed in this context"), "{e}");
    assert!(e.contains("c.yaml:23:"), "{e}");
    assert!(
        e.contains("line 23 starts at column 6, the key on line 22 at column 5"),
        "{e}"
    );
    assert!(e.contains("stops at the first syntax error"), "{e}");
}

#[test]
fn changes_none_is_checked() {
    let step = |extra: &str| {
        BASE.replace(
            "    run: echo {{ drive }}\n",
            &format!("    run: echo {{{{ drive }}}}\n{extra}"),
        )
    };
    let (r, _d) = validate(&step("    changes: none\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (r, _d) = validate(&step("    changes: nothing\n"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("c.yaml:24:14"), "{}", r.stderr);
    assert!(r.stderr.contains("`none`"), "{}", r.stderr);
    let (r, _d) = validate(&step("    changes: none\n    rollback: echo undo\n"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("a step that changes nothing has nothing to roll back"),
        "{}",
        r.stderr
    );
    let (r, _d) = validate(&step("    changes: none\n    point_of_no_return: true\n"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot be a point of no return"),
        "{}",
        r.stderr
    );
    let schema = runner(&["schema"], Path::new("."), &[]);
    assert!(schema.stdout.contains("\"changes\""), "{}", schema.stdout);
}

#[test]
fn wrong_keys_do_not_hide_the_other_errors() {
    // A misspelt key, a wrong boolean and, elsewhere, a step on an unknown target and an
    // undefined variable: all four in one run.
    let text = BASE.replace("    transport: ssh\n", "    transport: ssh\n    hostname: x\n").replace(
        "    run: echo {{ drive }}\n",
        "    run: echo {{ drive }}\n    idempotent: yes\n  - id: second\n    on: webb\n    run: 'true'\n  - id: third\n    on: web\n    run: echo {{ driv }}\n",
    );
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let e = &r.stderr;
    assert!(e.contains("unknown key `hostname`"), "{e}");
    assert!(e.contains("write `idempotent: true`"), "{e}");
    assert!(e.contains("`webb` is neither a target nor a group"), "{e}");
    assert!(e.contains("undefined variable `driv`"), "{e}");
    assert!(e.contains("4 errors found"), "{e}");
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

#[test]
fn values_of_the_wrong_shape_are_all_reported_at_once() {
    // A list where a mapping belongs, a mapping where text belongs, text where a list belongs.
    let text = BASE
        .replace(
            "  web:\n    transport: ssh\n    host: 127.0.0.1\n    user: admin\n",
            "  web: [ssh, 127.0.0.1]\n",
        )
        .replace("  all: [web, db]\n", "  all: [db]\n")
        .replace(
            "    run: echo {{ drive }}\n",
            "    run: { echo: x }\n  - id: second\n    on: db\n    run: 'true'\n    ok_codes: 0\n",
        );
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let e = &r.stderr;
    assert!(
        e.contains("invalid type: sequence, expected a target (a mapping)"),
        "{e}"
    );
    assert!(e.contains("invalid type: map, expected text"), "{e}");
    assert!(
        e.contains("invalid type: integer `0`, expected a list of exit codes"),
        "{e}"
    );
    assert!(e.contains("3 errors found"), "{e}");
    // Empty values still read as empty mappings and lists.
    let (r, _d) = validate(
        &BASE
            .replace("vars:\n  drive: 'D:'\n", "vars:\n")
            .replace("{{ drive }}", "x"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn missing_keys_are_all_reported_at_once() {
    let text = BASE
        .replace("    transport: local\n", "    user: x\n")
        .replace("      to: \"18:00\"\n", "")
        .replace("  - id: first\n    on: web\n", "  - on: web\n");
    let (r, _d) = validate(&text);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let e = &r.stderr;
    assert!(e.contains("missing `to` in a business_hours rule"), "{e}");
    assert!(e.contains("missing `transport` in a target"), "{e}");
    assert!(e.contains("missing `id` in a step"), "{e}");
    assert!(e.contains("add `transport: ssh`"), "{e}");
}
