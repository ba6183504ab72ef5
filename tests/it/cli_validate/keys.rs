//! Each key's value is checked: templates and their variables, step references and ids, one action
//! per step, files that must exist, transport-specific keys, keepalive, reboot and detach,
//! durations and `changes: none`.

use super::*;

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
