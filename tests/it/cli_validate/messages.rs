//! Every error names file, line and column and what would be valid, in plain words, and all errors
//! are reported at once in file order, none hiding another.

use super::*;

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
