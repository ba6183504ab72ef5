//! A step or target that was renamed or moved keeps no old success silently, and a journal written
//! before identities were recorded keeps its history.

use super::*;

fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("runner-apply-")
        .tempdir()
        .expect("create a temporary directory")
}

#[test]
fn a_renamed_step_that_was_done_is_not_run_again_silently() {
    let steps = |users_id: &str, cache_id: &str| {
        [
            step(users_id, "here", "echo users >> {dir}/users.ledger"),
            step(cache_id, "here", "echo cache >> {dir}/cache.ledger").key("idempotent", "true"),
        ]
    };
    let scene = Scene::new("rename")
        .local("here")
        .steps(steps("create-users", "warm-cache"));
    scene.apply().expect_exit(0).run();

    let scene = scene
        .without_steps()
        .steps(steps("create-ad-users", "warm-the-cache"));
    let r = scene
        .apply()
        .expect_exit(4)
        // The message names the new and the old id, and gives the exact command; an
        // idempotent step is not asked about.
        .expect_stderr_contains("`create-ad-users` on `here`")
        .expect_stderr_contains("`create-users`")
        .expect_stderr_contains("runner mark cutover.yaml create-ad-users@here done")
        .expect_stderr_lacks("warm-the-cache")
        .run();
    assert_eq!(
        scene.lines("users.ledger"),
        ["users"],
        "nothing ran\n{}",
        r.show()
    );
    assert_eq!(scene.lines("cache.ledger"), ["cache"], "nothing ran");

    scene.mark("create-ad-users@here", "done");
    scene
        .apply()
        .expect_exit(0)
        .expect_journal("create-ad-users", &[])
        .expect_journal("warm-the-cache", &succeeded_on(&["here"]))
        .run();
    assert_eq!(
        scene.lines("users.ledger"),
        ["users"],
        "the renamed step did not run twice"
    );
    assert_eq!(
        scene.lines("cache.ledger"),
        ["cache", "cache"],
        "the idempotent step simply ran"
    );
    scene.apply().expect_exit(0).run();
    assert_eq!(scene.lines("users.ledger"), ["users"]);
}

#[test]
fn a_target_moved_to_another_host_keeps_no_old_success_until_decided() {
    let new = Sshd::start("127.0.17.2");
    let scene = Scene::new("move")
        .ssh("dc", "127.0.17.1")
        .var("dc", "ledger", "{dir}/ledger")
        // The server's address, as sshd saw the connection.
        .step(step(
            "create-users",
            "dc",
            "set -- $SSH_CONNECTION; echo $3 >> {{ ledger }}",
        ));
    scene.apply().expect_exit(0).run();
    assert_eq!(scene.lines("ledger"), ["127.0.17.1"]);

    // The IP was wrong: fix it. The message names the target and its old and new address.
    let (old_port, new_port) = (scene.sshd("dc").port(), new.port());
    let scene = scene.ssh_to("dc", new);
    scene
        .apply()
        .expect_exit(4)
        .expect_stderr_contains("`create-users` on `dc`")
        .expect_stderr_contains(format!("127.0.17.1:{old_port}"))
        .expect_stderr_contains(format!("127.0.17.2:{new_port}"))
        .expect_stderr_contains("runner mark cutover.yaml create-users@dc retry")
        .run();
    assert_eq!(scene.lines("ledger"), ["127.0.17.1"], "nothing ran");
    // Nor is it undone on the new address.
    scene
        .run(["rollback", "cutover.yaml", "--yes"])
        .expect_exit(4)
        .expect_stderr_contains("`create-users` on `dc`")
        .run();

    scene.mark("create-users@dc", "retry");
    scene
        .apply()
        .expect_exit(0)
        .expect_journal(
            "create-users",
            &[("dc", "run", "succeeded"), ("dc", "run", "succeeded")],
        )
        .run();
    assert_eq!(
        scene.lines("ledger"),
        ["127.0.17.1", "127.0.17.2"],
        "the real server was reached"
    );
    scene.apply().expect_exit(0).run();
    assert_eq!(scene.lines("ledger"), ["127.0.17.1", "127.0.17.2"]);
}

#[test]
fn a_journal_written_before_identities_were_recorded_keeps_its_successes() {
    let dir = workdir();
    let fixture = common_cli::fixture("journal-v2");
    fs::copy(
        fixture.join("cutover.yaml"),
        dir.path().join("cutover.yaml"),
    )
    .expect("copy");
    let journal = journal_path(dir.path());
    fs::create_dir_all(journal.parent().expect("folder")).expect("mkdir");
    {
        let sql = fs::read_to_string(fixture.join("journal.sql")).expect("read the dump");
        let conn = rusqlite::Connection::open(&journal).expect("create the old journal");
        conn.execute_batch(&sql).expect("load the old journal");
    }
    let pb = dir.path().join("cutover.yaml").display().to_string();
    Run::at(dir.path())
        .args(["apply", &pb])
        .expect_exit(0)
        .expect_stdout_contains("done in an earlier run")
        .run();
    assert!(
        lines(&dir.path().join("ledger")).is_empty(),
        "nothing ran again"
    );
    Run::at(dir.path())
        .args(["status", &pb])
        .expect_exit(0)
        .run();
}

#[test]
fn a_renamed_target_with_the_same_address_does_not_run_its_done_steps_again() {
    let scene = Scene::new("target rename").local("old-name").step(step(
        "once",
        "old-name",
        "echo once >> {dir}/ledger",
    ));
    scene.apply().expect_exit(0).run();
    let scene = scene
        .rename_target("old-name", "new-name")
        .without_steps()
        .step(step("once", "new-name", "echo once >> {dir}/ledger"));
    scene
        .apply()
        .expect_exit(4)
        .expect_stderr_contains("`once` on `new-name`")
        .expect_stderr_contains("`once` on `old-name`")
        .run();
    scene.apply_with(&["--accept-changed"]).expect_exit(0).run();
    scene.apply().expect_exit(0).run();
    assert_eq!(scene.lines("ledger"), ["once"]);
}

#[test]
fn a_step_left_in_doubt_and_then_renamed_waits_for_an_operator() {
    let users = |id: &str| {
        step(
            id,
            "here",
            &format!(
                "echo users >> {{dir}}/ledger; touch {{dir}}/started; {}",
                wait_in_shell_for(Path::new("{dir}/go"))
            ),
        )
    };
    let scene = Scene::new("in doubt, renamed")
        .local("here")
        .step(users("create-users"));
    scene.write();
    let mut first = scene.apply().expect_signal(libc::SIGKILL).spawn();
    wait_for_file(&scene.path("started"), &mut first);
    first.kill();
    first.wait();
    fs::write(scene.path("go"), b"").expect("let a command left behind end");

    let scene = scene.without_steps().step(users("create-ad-users"));
    for extra in [&[][..], &["--accept-changed"][..]] {
        scene
            .apply_with(extra)
            .expect_exit(4)
            .expect_stderr_contains("left in doubt")
            .expect_stderr_contains("runner mark cutover.yaml create-ad-users@here done")
            .run();
    }
    assert_eq!(scene.lines("ledger"), ["users"], "nothing ran again");
    scene.mark("create-ad-users@here", "done");
    scene
        .apply()
        .expect_exit(0)
        .expect_journal("create-ad-users", &[])
        .run();
    assert_eq!(scene.lines("ledger"), ["users"]);
}
