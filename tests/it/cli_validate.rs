//! `runner validate` on good and bad playbooks: exit codes, positions, messages, and that an
//! invalid playbook changes nothing.

use crate::common::run::Run;
use crate::common_cli::fixture;
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

/// `runner validate c.yaml` on `text` in a fresh folder; validating writes no journal.
fn validate(text: &str) -> Run {
    Run::new()
        .playbook_named("c.yaml", text)
        .args(["validate", "c.yaml"])
        .expect_no_journal()
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
fn unknown_key_names_file_line_column_and_suggests() {
    let text = BASE.replace(
        "    run: echo {{ drive }}",
        "    run: echo {{ drive }}\n    rollbak: echo undo",
    );
    invalid(&text)
        .expect_stderr_contains("unknown key `rollbak` in a step")
        .expect_stderr_contains("c.yaml:24:5")
        .expect_stderr_contains("24 |     rollbak: echo undo")
        .expect_stderr_contains("   |     ^^^^^^^\n")
        .expect_stderr_contains("did you mean `rollback`?")
        .run();
}

#[test]
fn words_from_other_tools_are_translated() {
    let text = BASE.replace("    run: echo {{ drive }}", "    comand: echo hi");
    invalid(&text)
        .expect_stderr_contains("did you mean `command`? That is called `run`")
        .run();
}

#[test]
fn several_errors_are_reported_at_once_in_file_order() {
    let text = BASE
        .replace("America/Chicago", "America/Chicagoo")
        .replace("on: web", "on: wbe")
        .replace("{{ drive }}", "{{ driv }}");
    let r = invalid(&text)
        .expect_stderr_contains("did you mean `America/Chicago`?")
        .expect_stderr_contains("did you mean `web`?")
        .expect_stderr_contains("2 errors found; nothing was run and nothing was written")
        .run();
    let tz = r
        .stderr
        .find("`America/Chicagoo` is not a known IANA time zone")
        .expect(&r.stderr);
    let on = r
        .stderr
        .find("`wbe` is neither a target nor a group")
        .expect(&r.stderr);
    assert!(tz < on, "{}", r.show());
}

#[test]
fn undefined_template_variable() {
    invalid(&BASE.replace("{{ drive }}", "{{ driv }}"))
        .expect_stderr_contains("`run` uses undefined variable `driv` for target `web`")
        .expect_stderr_contains("did you mean `drive`?")
        .run();
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
    validate(&text).expect_exit(0).run();
}

#[test]
fn a_playbook_saved_with_a_byte_order_mark_is_valid() {
    // Windows editors write a UTF-8 byte order mark at the start of the file.
    let r = validate(&format!("\u{feff}{BASE}"))
        .expect_exit(0)
        .expect_stdout_contains("valid")
        .run();
    Run::at(r.path())
        .args(["plan", "c.yaml"])
        .expect_exit(0)
        .run();
}

#[test]
fn a_literal_secret_is_refused_without_echoing_it() {
    let text = BASE.replace(
        "    user: admin\n",
        "    user: admin\n    password: Sup3rS3cret!\n",
    );
    invalid(&text)
        .expect_stderr_contains("`password` is a literal secret")
        .expect_stderr_contains("{ env: VARIABLE }")
        .expect_stderr_lacks("Sup3rS3cret!")
        .expect_stdout_lacks("Sup3rS3cret!")
        .run();
}

#[test]
fn bad_window_values_each_get_an_error() {
    let text = BASE
        .replace("days: mon-fri", "days: mon-fry")
        .replace("\"18:00\"", "\"25:00\"")
        .replace("margin: 15m", "margin: soon");
    invalid(&text)
        .expect_stderr_contains("`mon-fry` is not a day or a range of days")
        .expect_stderr_contains("`25:00` is not a time of day")
        .expect_stderr_contains("`soon` is not a duration")
        .run();
}

#[test]
fn business_hours_without_timezone() {
    invalid(&BASE.replace("  timezone: America/Chicago\n", ""))
        .expect_stderr_contains("the window has business hours but no `timezone`")
        .run();
}

#[test]
fn steps_references_and_ids() {
    let text = format!(
        "{BASE}  - id: first\n    on: all\n    run: x\n  - id: Bad_Id\n    on: all\n    run: x\n  - id: dl\n    on: all\n    run: x\n    deadline: {{ after: later, within: 21d }}\n  - id: later\n    on: all\n    run: x\n"
    );
    invalid(&text)
        .expect_stderr_contains("step id `first` is used twice")
        .expect_stderr_contains("`Bad_Id` is not a valid step id")
        .expect_stderr_contains("`deadline.after` names `later`, which is not an earlier step")
        .expect_stderr_contains("`later` comes later in the playbook")
        .run();
}

#[test]
fn exactly_one_action() {
    let text = format!(
        "{BASE}  - id: two\n    on: web\n    run: a\n    manual: b\n  - id: none\n    on: web\n"
    );
    invalid(&text)
        .expect_stderr_contains("step `two` has both `run` and `manual`")
        .expect_stderr_contains("step `none` has nothing to do")
        .run();
}

#[test]
fn missing_script_and_upload_files() {
    let text = format!(
        "{BASE}  - id: s\n    on: web\n    script: scripts/nope.sh\n  - id: u\n    on: web\n    upload: {{ src: files/nope.bin, dest: /tmp/x }}\n"
    );
    invalid(&text)
        .expect_stderr_contains("cannot read `scripts/nope.sh`")
        .expect_stderr_contains("cannot read `files/nope.bin`")
        .run();
}

/// `validate` of an invalid playbook: exit 2, and nothing on stdout (the errors go to stderr).
fn invalid(text: &str) -> Run {
    validate(text).expect_exit(2).expect_stdout("")
}

/// `invalid` with the clock set to `now` (RUNNER_NOW).
fn invalid_at(text: &str, now: &str) -> Run {
    validate_at(text, now).expect_exit(2).expect_stdout("")
}

/// `validate` with the clock set to `now` (RUNNER_NOW).
fn validate_at(text: &str, now: &str) -> Run {
    validate(text).env("RUNNER_NOW", now)
}

#[test]
fn a_step_that_could_never_fit_between_business_hours() {
    // Weeknights are 13h30m; the weekend gap is 61h30m. 3d cannot fit anywhere.
    let text = BASE.replace("    run: echo {{ drive }}", "    run: x\n    estimate: 3d");
    invalid(&text)
        .expect_stderr_contains("step `first` cannot start within 14 days from")
        .expect_stderr_contains("(the current time)")
        .expect_stderr_contains("(3d15m)")
        .expect_stderr_contains("the longest is 2d13h30m")
        .run();
    // The same step is fine when it is allowed during business hours.
    let ok = BASE.replace(
        "    run: echo {{ drive }}",
        "    run: x\n    estimate: 3d\n    business_hours: allow",
    );
    validate(&ok).expect_exit(0).run();
}

#[test]
fn transport_specific_keys_are_checked() {
    let text = BASE
        .replace(
            "    transport: local\n",
            "    transport: local\n    host: x\n",
        )
        .replace("    user: admin\n", "    user: admin\n    https: true\n");
    invalid(&text)
        .expect_stderr_contains("a local target has no `host`")
        .expect_stderr_contains("`https` applies only to winrm targets")
        .run();
}

#[test]
fn keepalive_applies_to_ssh_targets_only() {
    let text = BASE.replace(
        "    transport: local\n",
        "    transport: local\n    keepalive: 15s\n  \
         win:\n    transport: winrm\n    host: h\n    user: u\n    password: { env: P }\n    keepalive: 15s\n",
    );
    let r = invalid(&text)
        .expect_stderr_contains("c.yaml:18:16")
        .expect_stderr_contains("c.yaml:24:16")
        .expect_stderr_contains("use `transport: ssh` for `win`")
        .run();
    assert_eq!(
        r.stderr
            .matches("`keepalive` applies only to ssh targets")
            .count(),
        2,
        "{}",
        r.show()
    );
}

#[test]
fn keepalive_is_whole_seconds_from_one_second() {
    for bad in ["0s", "500ms", "1.5s", "2h"] {
        let text = BASE.replace(
            "    user: admin\n",
            &format!("    user: admin\n    keepalive: {bad}\n"),
        );
        invalid(&text)
            .note(bad)
            .expect_stderr_contains("c.yaml:16:16")
            .expect_stderr_contains(bad)
            .expect_stderr_contains("whole seconds from 1s to 1h")
            .run();
    }
    for good in ["1s", "2m", "1h"] {
        let text = BASE.replace(
            "    user: admin\n",
            &format!("    user: admin\n    keepalive: {good}\n"),
        );
        validate(&text).note(good).expect_exit(0).run();
    }
}

#[test]
fn yaml_syntax_and_type_errors_have_positions() {
    invalid("name: [unclosed\nsteps: x\n")
        .expect_stderr_contains("YAML syntax error")
        .expect_stderr_contains("c.yaml:")
        .run();

    invalid(&BASE.replace("  margin: 15m\n", "  margin: 15m\n  when_closed: later\n"))
        .expect_stderr_contains("when_closed")
        .expect_stderr_contains("c.yaml:9:")
        .run();
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
    invalid(&text).run();
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
        invalid(text)
            .note(format!("input {text:?}"))
            .expect_stderr_lacks("panicked")
            .run();
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
        Run::at(dir.path())
            .args(&cmd)
            .note(format!("{cmd:?}"))
            .expect_exit(2)
            .run();
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
    Run::at(dir.path())
        .args(["validate", "nope.yaml"])
        .expect_exit(2)
        .expect_stderr_contains("nope.yaml")
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

#[test]
fn reboot_and_detach_keys_are_checked() {
    let text = format!(
        "{BASE}  - id: r\n    on: web\n    reboot: {{ timeout: soon }}\n  - id: u\n    on: web\n    upload: {{ src: c.yaml, dest: /tmp/x }}\n    detach: true\n    reboot_on: [3010]\n  - id: ok\n    on: web\n    run: x\n    reboot_on: [100]\n    detach: false\n"
    );
    invalid(&text)
        .expect_stderr_contains("`soon` is not a duration")
        .expect_stderr_contains("only `run` steps can run detached")
        .expect_stderr_contains("`reboot_on` applies to `run` and `script` steps")
        // The valid step is not blamed.
        .expect_stderr_lacks("steps[4]")
        .run();

    invalid(&format!(
        "{BASE}  - id: r\n    on: web\n    reboot: {{ timout: 5m }}\n"
    ))
    .expect_stderr_contains("unknown key `timout` in reboot")
    .expect_stderr_contains("did you mean `timeout`?")
    .run();
}

#[test]
fn a_wrong_type_names_what_is_valid_not_an_internal_type() {
    // `reboot: true` reads naturally but the key takes a mapping.
    let text = format!("{BASE}  - id: boot\n    on: web\n    reboot: true\n");
    invalid(&text)
        .expect_stderr_contains("c.yaml:26:13")
        .expect_stderr_contains("`reboot: { timeout: DURATION }`")
        .expect_stderr_lacks("Raw")
        .run();
}

#[test]
fn a_wrong_type_quotes_the_value_as_written() {
    // The readable names replace serde's, not words that happen to be in the playbook.
    let text = BASE.replace(
        "window:\n  timezone: America/Chicago\n  business_hours:\n    - days: mon-fri\n      from: \"07:30\"\n      to: \"18:00\"\n  margin: 15m\n",
        "window: struct RawStep\n",
    );
    invalid(&text)
        .expect_stderr_contains(
            "invalid type: string \"struct RawStep\", expected the window (a mapping)",
        )
        .run();
}

#[test]
fn a_value_of_no_accepted_shape_names_the_shapes() {
    // `days` with no value is null, which none of the accepted shapes of `days` is.
    let text = BASE.replace("    - days: mon-fri\n", "    - days:\n");
    invalid(&text)
        .expect_stderr_contains("expected a day (mon), a range (mon-fri) or a list ([mon, wed])")
        .expect_stderr_lacks("Raw")
        .run();
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
        validate_at(&text, now)
            .note(format!("RUNNER_NOW={now}"))
            .expect_exit(0)
            .run();
    }
    // The plan places it over the holidays.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "c.yaml", &text);
    Run::at(dir.path())
        .args(["plan", "c.yaml", "--start", "2026-12-21T18:00:00-06:00"])
        .expect_exit(0)
        .expect_stdout_contains("Wed 23 Dec 18:00")
        .run();
    // Once the holidays are past, no gap is long enough, and the message says from when it
    // looked and for how long.
    invalid_at(&text, "2027-01-04T12:00:00Z")
        .expect_stderr_contains(
            "step `first` cannot start within 14 days from Mon 4 Jan 2027 06:00 CST (RUNNER_NOW)",
        )
        .expect_stderr_contains("(3d8h15m)")
        .run();
}

#[test]
fn a_step_that_fits_only_the_longer_autumn_weekend_is_valid_before_it() {
    // Chicago falls back on Sunday 1 November 2026: Friday 30 October 18:00 CDT to Monday
    // 2 November 07:30 CST is 62h30m, an hour more than any other weekend. 62h plus the
    // 15m margin fits only that weekend.
    let text = long_step("62h", "[]");
    validate_at(&text, "2026-10-26T12:00:00Z")
        .expect_exit(0)
        .run();
    // After it, the next such weekend is a year away.
    invalid_at(&text, "2026-11-03T12:00:00Z")
        .expect_stderr_contains("cannot start within 14 days from Tue 3 Nov 2026 06:00 CST")
        .expect_stderr_contains("the longest is 2d13h30m")
        .run();
}

#[test]
fn every_day_name_the_window_reads_is_valid() {
    for days in ["tues", "thurs-fri", "Thur", "[mon, tues, wednesday]"] {
        let text = BASE.replace("days: mon-fri", &format!("days: {days}"));
        validate(&text)
            .note(format!("days: {days}"))
            .expect_exit(0)
            .run();
    }
}

#[test]
fn type_errors_in_separate_keys_are_all_reported_at_once() {
    // Six mistakes in six keys: one run of validate shows every one of them.
    let text = BASE.replace("    transport: ssh\n", "    transport: sshh\n").replace(
        "    run: echo {{ drive }}\n",
        "    run: echo {{ drive }}\n    point_of_no_return: yes\n    estimate: 1mo\n    retries: many\n    timeout: 2 hours\n    comand: x\n",
    );
    let mut run = invalid(&text).expect_stderr_contains("6 errors found");
    for at in [
        "c.yaml:13:16",
        "c.yaml:24:25",
        "c.yaml:25:15",
        "c.yaml:26:14",
        "c.yaml:27:14",
        "c.yaml:28:5",
    ] {
        run = run.expect_stderr_contains(at);
    }
    let r = run
        .expect_stderr_contains("write `point_of_no_return: true`")
        .expect_stderr_contains("did you mean `ssh`?")
        .expect_stderr_contains("`many` is not a whole number")
        .expect_stderr_lacks("jiff")
        .expect_stderr_lacks("SpanRelativeTo")
        // Each with its source line and a caret.
        .expect_stderr_contains("24 |     point_of_no_return: yes\n")
        .run();
    // In file order.
    let e = &r.stderr;
    assert!(
        e.find("c.yaml:13:16").unwrap() < e.find("c.yaml:28:5").unwrap(),
        "{e}"
    );
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
        invalid(&text)
            .note(bad)
            .expect_stderr_contains("c.yaml:24:15")
            .expect_stderr_contains(format!("`{bad}` is not a duration"))
            .expect_stderr_contains("write durations like 90s, 15m, 1h30m or 2d")
            .expect_stderr_lacks("jiff")
            .run();
    }
    for good in ["90s", "15m", "1h30m", "2d", "0s", "1d2h3m4s"] {
        let text = BASE.replace(
            "    run: echo {{ drive }}\n",
            &format!("    run: echo {{{{ drive }}}}\n    estimate: {good}\n"),
        );
        validate(&text).note(good).expect_exit(0).run();
    }
}

#[test]
fn a_tab_in_the_indentation_points_at_the_tab_and_says_spaces() {
    let text = BASE.replace("    run: echo", "\trun: echo");
    invalid(&text)
        .expect_stderr_contains("c.yaml:23:1")
        .expect_stderr_contains("tab")
        .expect_stderr_contains("indent with spaces")
        .expect_stderr_contains("stops at the first syntax error")
        .run();
}

#[test]
fn bad_indentation_is_explained_in_plain_words() {
    let text = BASE.replace("    run: echo", "     run: echo");
    invalid(&text)
        .expect_stderr_lacks("not allowed in this context")
        .expect_stderr_contains("c.yaml:23:")
        .expect_stderr_contains("line 23 starts at column 6, the key on line 22 at column 5")
        .expect_stderr_contains("stops at the first syntax error")
        .run();
}

#[test]
fn changes_none_is_checked() {
    let step = |extra: &str| {
        BASE.replace(
            "    run: echo {{ drive }}\n",
            &format!("    run: echo {{{{ drive }}}}\n{extra}"),
        )
    };
    validate(&step("    changes: none\n")).expect_exit(0).run();
    invalid(&step("    changes: nothing\n"))
        .expect_stderr_contains("c.yaml:24:14")
        .expect_stderr_contains("`none`")
        .run();
    invalid(&step("    changes: none\n    rollback: echo undo\n"))
        .expect_stderr_contains("a step that changes nothing has nothing to roll back")
        .run();
    invalid(&step("    changes: none\n    point_of_no_return: true\n"))
        .expect_stderr_contains("cannot be a point of no return")
        .run();
    Run::new()
        .args(["schema"])
        .expect_exit(0)
        .expect_stdout_contains("\"changes\"")
        .run();
}

#[test]
fn wrong_keys_do_not_hide_the_other_errors() {
    // A misspelt key, a wrong boolean and, elsewhere, a step on an unknown target and an
    // undefined variable: all four in one run.
    let text = BASE.replace("    transport: ssh\n", "    transport: ssh\n    hostname: x\n").replace(
        "    run: echo {{ drive }}\n",
        "    run: echo {{ drive }}\n    idempotent: yes\n  - id: second\n    on: webb\n    run: 'true'\n  - id: third\n    on: web\n    run: echo {{ driv }}\n",
    );
    invalid(&text)
        .expect_stderr_contains("unknown key `hostname`")
        .expect_stderr_contains("write `idempotent: true`")
        .expect_stderr_contains("`webb` is neither a target nor a group")
        .expect_stderr_contains("undefined variable `driv`")
        .expect_stderr_contains("4 errors found")
        .run();
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
    invalid(&text)
        .expect_stderr_contains("invalid type: sequence, expected a target (a mapping)")
        .expect_stderr_contains("invalid type: map, expected text")
        .expect_stderr_contains("invalid type: integer `0`, expected a list of exit codes")
        .expect_stderr_contains("3 errors found")
        .run();
    // Empty values still read as empty mappings and lists.
    validate(
        &BASE
            .replace("vars:\n  drive: 'D:'\n", "vars:\n")
            .replace("{{ drive }}", "x"),
    )
    .expect_exit(0)
    .run();
}

#[test]
fn missing_keys_are_all_reported_at_once() {
    let text = BASE
        .replace("    transport: local\n", "    user: x\n")
        .replace("      to: \"18:00\"\n", "")
        .replace("  - id: first\n    on: web\n", "  - on: web\n");
    invalid(&text)
        .expect_stderr_contains("missing `to` in a business_hours rule")
        .expect_stderr_contains("missing `transport` in a target")
        .expect_stderr_contains("missing `id` in a step")
        .expect_stderr_contains("add `transport: ssh`")
        .run();
}
