//! Passphrases and target secrets never appear in output, journal or logs, every line of a
//! multi-line secret is masked, and a missing or wrong passphrase runs nothing.

use super::*;

/// Every file below `dir`, recursively.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// `secret` is written in no file of the state folder below `dir`.
#[track_caller]
fn assert_not_in_state(dir: &Path, secret: &str) {
    for f in files_below(&dir.join(".runner")) {
        let bytes = fs::read(&f).expect("read a state file");
        assert!(
            !contains_bytes(&bytes, secret.as_bytes()),
            "a secret is written in {}",
            f.display()
        );
    }
}

/// An ssh target `a` logging in with a new key encrypted with `passphrase` (read from
/// RUNNER_TEST_PP), the only key the server accepts.
fn passphrase_scene(name: &str, ip: &str, passphrase: &str) -> Scene {
    let scene = Scene::new(name).ssh("a", ip);
    let key = scene.path("encrypted_key");
    keygen(&key, passphrase);
    let key_text = fs::read_to_string(&key).expect("read the key");
    assert!(!key_text.contains(passphrase));
    // Authorize only the encrypted key's public half: logging in proves the passphrase was used.
    let public = fs::read_to_string(key.with_extension("pub")).expect("read the public key");
    fs::write(scene.sshd("a").dir().join("authorized_keys"), public)
        .expect("write authorized_keys");
    scene
        .login_key("a", &key)
        .target_keys("a", "    passphrase: { env: RUNNER_TEST_PP }\n")
        .var("a", "ledger", "{dir}/ledger")
}

#[test]
fn a_passphrase_never_appears_in_output_journal_or_logs() {
    const PASSPHRASE: &str = "orchid-7391-zebra-Quill";
    // The commands print the passphrase without containing it.
    let (head, tail) = PASSPHRASE.split_at(9);
    let scene = passphrase_scene("secrets", "127.0.0.59", PASSPHRASE).steps([
        step(
            "echo-it",
            "a",
            &format!(
                "printf '%s%s\\n' {head} {tail}; printf 'err %s%s\\n' {head} {tail} >&2; echo ran >> {{{{ ledger }}}}"
            ),
        ),
        step(
            "fail-with-it",
            "a",
            &format!("printf 'bad: %s%s\\n' {head} {tail}; exit 3"),
        ),
    ]);
    assert!(!scene.yaml().contains(PASSPHRASE));
    let env = [("RUNNER_TEST_PP", PASSPHRASE)];

    let first = scene
        .apply()
        .envs(&env)
        .expect_exit(1)
        // The output line is shown masked.
        .expect_stdout_contains("********")
        .expect_journal("echo-it", &succeeded_on(&["a"]))
        .expect_journal("fail-with-it", &[("a", "run", "failed")])
        .run();
    assert_eq!(scene.lines("ledger"), ["ran"], "{}", first.show());
    let second = scene
        .apply_with(&["--json"])
        .envs(&env)
        .expect_exit(1)
        .run();
    let status = scene
        .run(["status", "cutover.yaml", "--format", "json"])
        .envs(&env)
        .expect_exit(0)
        .run();
    let report = scene
        .run(["report", "cutover.yaml", "--format", "json"])
        .envs(&env)
        .expect_exit(0)
        .run();
    for (what, r) in [
        ("first apply", &first),
        ("apply --json", &second),
        ("status", &status),
        ("report", &report),
    ] {
        assert!(
            !r.stdout.contains(PASSPHRASE) && !r.stderr.contains(PASSPHRASE),
            "the passphrase leaked into the output of {what}:\n{}",
            r.show()
        );
    }

    let files = files_below(&scene.path(".runner"));
    assert!(files
        .iter()
        .any(|f| f.extension().is_some_and(|e| e == "db")));
    assert_not_in_state(scene.dir(), PASSPHRASE);
    let logs: Vec<String> = files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n == "echo-it@a.log"))
        .map(|f| fs::read_to_string(f).expect("read the run log"))
        .collect();
    assert_eq!(logs.len(), 1, "one run log for echo-it@a: {files:?}");
    assert!(
        logs[0].contains("stdout | ********") && logs[0].contains("stderr | err ********"),
        "the mask stands where the passphrase was printed:\n{}",
        logs[0]
    );
    // The failure message journaled with the attempt is masked too.
    let failed = scene.attempts("fail-with-it");
    assert!(!failed.is_empty());
    for a in &failed {
        let m = a.message.as_deref().unwrap_or_default();
        assert!(m.contains("bad: ********"), "message: {m:?}");
    }
}

#[test]
fn a_missing_or_wrong_passphrase_runs_nothing_and_is_not_shown() {
    const PASSPHRASE: &str = "lantern-2208-fjord";
    const WRONG: &str = "lantern-2208-fjorb";
    let scene = passphrase_scene("secrets", "127.0.0.65", PASSPHRASE).step(step(
        "one",
        "a",
        "echo one >> {{ ledger }}",
    ));

    // Not set: invalid input, and the message names the variable, once; no state is written.
    let r = scene
        .apply()
        .expect_exit(2)
        .expect_stderr_contains("RUNNER_TEST_PP")
        .expect_no_journal()
        .run();
    assert_eq!(
        r.stderr.matches("RUNNER_TEST_PP is not set").count(),
        1,
        "said once:\n{}",
        r.show()
    );
    assert!(scene.lines("ledger").is_empty());

    // Wrong: the login fails; the value tried is not shown anywhere.
    scene
        .apply()
        .env("RUNNER_TEST_PP", WRONG)
        .expect_exit(1)
        .expect_stdout_lacks(WRONG)
        .expect_stderr_lacks(WRONG)
        .expect_journal("one", &[("a", "run", "failed")])
        .run();
    assert!(scene.lines("ledger").is_empty());
    assert_not_in_state(scene.dir(), WRONG);

    scene
        .apply()
        .env("RUNNER_TEST_PP", PASSPHRASE)
        .expect_exit(0)
        .expect_journal("one", &[("a", "run", "failed"), ("a", "run", "succeeded")])
        .run();
    assert_eq!(scene.lines("ledger"), ["one"]);
}

/// An ssh target that is never reached in the test (nothing listens on port 1), with a
/// password read from `secret`.
fn unreachable(secret: &str) -> String {
    format!(
        "    transport: ssh\n    host: 127.0.0.1\n    port: 1\n    user: nobody\n    password: {secret}\n"
    )
}

#[test]
fn secrets_of_targets_with_no_work_left_are_still_masked() {
    const PASSWORD: &str = "Quartz-5512-heron-Mellow";
    // The local commands repeat the database password (they inherit the environment).
    let scene = Scene::new("finished target secrets")
        .target("db", &unreachable("{ env: RUNNER_TEST_DB_PW }"))
        .local("here")
        .steps([
            step("set-db-password", "db", "true"),
            step("show", "here", "printf 'pw=%s\\n' \"$RUNNER_TEST_DB_PW\"")
                .text("rollback", "printf 'undo pw=%s\\n' \"$RUNNER_TEST_DB_PW\""),
            step(
                "fail",
                "here",
                "printf 'bad pw=%s\\n' \"$RUNNER_TEST_DB_PW\"; exit 3",
            ),
        ]);
    let env = [("RUNNER_TEST_DB_PW", PASSWORD)];
    // The database step is done: `db` has no work left.
    scene
        .run(["mark", "cutover.yaml", "set-db-password@db", "done"])
        .envs(&env)
        .expect_exit(0)
        .run();

    let mut shown = vec![
        (
            "apply",
            scene
                .apply()
                .envs(&env)
                .expect_exit(1)
                .expect_stdout_contains("pw=********")
                .expect_journal("set-db-password", &[])
                .expect_journal("fail", &[("here", "run", "failed")])
                .run(),
        ),
        (
            "apply --json",
            scene
                .apply_with(&["--json"])
                .envs(&env)
                .expect_exit(1)
                .run(),
        ),
        (
            "rollback",
            scene
                .run(["rollback", "cutover.yaml", "--yes"])
                .envs(&env)
                .expect_exit(0)
                .expect_stdout_contains("undo pw=********")
                .run(),
        ),
    ];
    for format in ["text", "json"] {
        let r = scene
            .run(["status", "cutover.yaml", "--format", format])
            .envs(&env)
            .expect_exit(0)
            .run();
        shown.push(("status", r));
    }
    for format in ["markdown", "html", "json"] {
        let r = scene
            .run(["report", "cutover.yaml", "--format", format])
            .envs(&env)
            .expect_exit(0)
            .run();
        shown.push(("report", r));
    }
    for (what, r) in &shown {
        assert!(
            !r.stdout.contains(PASSWORD) && !r.stderr.contains(PASSWORD),
            "the password leaked into {what}:\n{}",
            r.show()
        );
    }
    assert_not_in_state(scene.dir(), PASSWORD);
    for a in scene.attempts("fail") {
        let m = a.message.unwrap_or_default();
        assert!(!m.contains(PASSWORD), "journal message: {m:?}");
    }
    // A missing secret of a target with no work left is not an error.
    scene
        .apply()
        .expect_exit(1)
        .expect_stderr_contains("step `fail` failed")
        .run();
}

#[test]
fn every_line_of_a_multi_line_secret_is_masked() {
    let first = "Ledger-first-line-7731";
    let second = "  Ledger-second-line-4408";
    // The local step prints the secret file, line by line, then the unreachable target fails.
    let scene = Scene::new("multi-line secret")
        .local("here")
        .target("db", &unreachable("{ file: db.pw }"))
        .steps([
            step("show", "here", "cat db.pw"),
            step("use-db", "db", "true"),
        ]);
    fs::write(scene.path("db.pw"), format!("{first}\n{second}\nab\n")).expect("secret file");
    scene
        .apply()
        .expect_exit(1)
        .expect_stdout_lacks(first)
        .expect_stdout_lacks(second.trim())
        .expect_stdout_contains("show@here | ********")
        // Lines shorter than four characters are not masked (documented): they are too common.
        .expect_stdout_contains("show@here | ab")
        .expect_journal("show", &succeeded_on(&["here"]))
        .expect_journal("use-db", &[("db", "run", "failed")])
        .run();
    for line in [first, second.trim()] {
        assert_not_in_state(scene.dir(), line);
    }
}
