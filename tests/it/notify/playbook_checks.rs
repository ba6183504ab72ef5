//! `notify:` mistakes are bad input with line, column and the valid choices, a missing SMTP
//! password writes nothing, and the plan shows sinks without secrets and warns about unencrypted
//! mail.

use super::*;

#[test]
fn a_missing_smtp_password_is_bad_input_and_nothing_is_written() {
    let (dir, _) = failing_playbook(
        "  - email:\n      to: a@example.com\n      from: runner@example.com\n      smtp: { host: mail.example.com, user: runner, password: { env: NOTIFY_UNSET_PASSWORD } }\n    on: [step-failed]",
    );
    apply(dir.path(), &[])
        .expect_exit(2)
        .expect_stderr_contains("NOTIFY_UNSET_PASSWORD")
        .run();
    assert!(!dir.path().join(".runner").exists());
}

#[test]
fn notify_mistakes_are_reported_with_line_column_and_the_valid_choices() {
    let (dir, _) = failing_playbook(
        "  - webhook: hooks.example.com/acme\n    on: [step-failed, stepfailed, coffee]\n  - email:\n      to: not-an-address\n      from: runner@example.com\n      smtp: { host: mail.example.com, password: hunter2 }\n    on: [run-finished]",
    );
    Run::at(dir.path())
        .args(["validate", "acme.yaml"])
        .expect_exit(2)
        .expect_stderr_contains("acme.yaml:20:49")
        // A literal password is refused before anything else, and never echoed.
        .expect_stderr_contains("`password` is a literal secret")
        .expect_stderr_lacks("hunter2")
        .run();
    let fixed = std::fs::read_to_string(dir.path().join("acme.yaml"))
        .unwrap()
        .replace("password: hunter2", "user: runner, password: { env: X }");
    std::fs::write(dir.path().join("acme.yaml"), fixed).unwrap();
    let out = Run::at(dir.path())
        .args(["validate", "acme.yaml"])
        .expect_exit(2)
        .run();
    let e = &out.stderr;
    for want in [
        "acme.yaml:15:14",
        "`hooks.example.com/acme` is not a usable URL: it has no scheme (http:// or https://)",
        "acme.yaml:16:23",
        "`stepfailed` is not a notification event",
        "did you mean `step-failed`?",
        "acme.yaml:16:35",
        "`coffee` is not a notification event",
        "the events are step-failed, operator-needed, window-closing, night-done, run-finished, run-stopped",
        "acme.yaml:18:11",
        "`not-an-address` is not a mail address",
    ] {
        assert!(e.contains(want), "no `{want}` in:\n{e}");
    }
}

#[test]
fn the_plan_shows_sinks_without_secrets_and_warns_about_unencrypted_mail() {
    let (dir, _) = failing_playbook(
        "  - ntfy: https://ntfy.sh/acme-secret-topic\n    on: [step-failed, operator-needed]\n  - email:\n      to: consultant@example.com\n      from: runner@example.com\n      smtp: { host: mail.example.com, port: 25, tls: none, user: runner, password: { env: NOTIFY_SMTP_PASSWORD } }\n    on: [run-finished]",
    );
    let env = [
        ("NOTIFY_SMTP_PASSWORD", SMTP_PASSWORD),
        ("RUNNER_NOW", EVENING),
    ];
    Run::at(dir.path())
        .args(["plan", "acme.yaml"])
        .envs(&env)
        .expect_exit(0)
        .expect_stdout_contains(
            "Notifications\n  ntfy https://ntfy.sh\n      on step-failed, operator-needed\n",
        )
        .expect_stdout_contains("  email to consultant@example.com\n      from runner@example.com via mail.example.com:25 (none, user runner, password { env: NOTIFY_SMTP_PASSWORD }), on run-finished\n")
        .expect_stdout_contains("[smtp-unencrypted] notify entry 2 hands mail to mail.example.com:25 without TLS (`tls: none`): the messages and the SMTP password cross the network readably")
        .expect_stdout_lacks("acme-secret-topic")
        .expect_stdout_lacks(SMTP_PASSWORD)
        .run();
    Run::at(dir.path())
        .args(["plan", "acme.yaml", "--format", "markdown"])
        .envs(&env)
        .expect_exit(0)
        .expect_stdout_contains("## Notifications\n\n| Where | Details |")
        .expect_stdout_contains("### Mail without encryption (1)\n\n`smtp-unencrypted`: ")
        .expect_stdout_lacks("acme-secret-topic")
        .run();

    let schema = Run::at(dir.path()).args(["schema"]).expect_exit(0).run();
    let v: Value = serde_json::from_str(&schema.stdout).expect("schema JSON");
    assert!(
        v["$defs"]["RawPlaybook"]["properties"]["notify"].is_object(),
        "{}",
        schema.stdout
    );
    assert_eq!(
        v["$defs"]["RawSmtp"]["properties"]["tls"]["anyOf"][0]["$ref"],
        "#/$defs/SmtpTls"
    );
}
