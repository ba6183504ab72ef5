//! A journal belongs to one playbook and one file: another playbook's journal, a copied playbook, a
//! symlinked path, and a journal deleted or replaced during a run are all caught.

use super::*;

fn write_playbook(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("cutover.yaml");
    fs::write(&path, yaml).expect("write the playbook");
    path
}

#[test]
fn a_journal_of_another_playbook_is_refused() {
    let acme = Scene::new("Acme cutover")
        .file_name("acme.yaml")
        .local("here")
        .step(step(
            "s1",
            "here",
            "echo 'Acme cutover' >> {dir}/acme.ledger",
        ));
    let state = acme.path("shared.db").display().to_string();
    acme.apply_with(&["--state", &state]).expect_exit(0).run();

    let beta = acme
        .file_name("beta.yaml")
        .name("Beta cutover")
        .without_steps()
        .step(step(
            "s1",
            "here",
            "echo 'Beta cutover' >> {dir}/beta.ledger",
        ));
    // The message names both playbooks.
    beta.apply_with(&["--state", &state])
        .expect_exit(4)
        .expect_stderr_contains("Acme cutover")
        .expect_stderr_contains("Beta cutover")
        .run();
    assert!(beta.lines("beta.ledger").is_empty(), "nothing ran");
    beta.run(["mark", "beta.yaml", "s1", "done", "--state", &state])
        .expect_exit(4)
        .run();
    beta.run(["status", "beta.yaml", "--state", &state])
        .expect_exit(0)
        .expect_stderr_contains("belongs to the playbook `Acme cutover`")
        .run();

    let acme = beta
        .file_name("acme.yaml")
        .name("Acme cutover")
        .without_steps()
        .step(step(
            "s1",
            "here",
            "echo 'Acme cutover' >> {dir}/acme.ledger",
        ));
    acme.apply_with(&["--state", &state]).expect_exit(0).run();
    assert_eq!(acme.lines("acme.ledger"), ["Acme cutover"]);
}

#[test]
fn a_playbook_or_journal_reached_through_a_symlink_shares_one_journal_and_lock() {
    let scene = Scene::new("symlinks").local("here").step(step(
        "hold",
        "here",
        &format!(
            "echo hold >> {{dir}}/ledger; touch {{dir}}/started; {}",
            wait_in_shell_for(Path::new("{dir}/go"))
        ),
    ));
    let real = scene.path("real");
    let elsewhere = scene.path("elsewhere");
    fs::create_dir_all(&real).expect("mkdir");
    fs::create_dir_all(&elsewhere).expect("mkdir");
    let pb = write_playbook(&real, &scene.yaml());
    let link = elsewhere.join("link.yaml");
    std::os::unix::fs::symlink(&pb, &link).expect("symlink the playbook");
    let (pb_s, link_s) = (pb.display().to_string(), link.display().to_string());

    let mut first = Run::at(scene.dir())
        .args(["apply", &pb_s])
        .expect_exit(0)
        .spawn();
    wait_for_file(&scene.path("started"), &mut first);
    let state_link = scene.path("state-link.db");
    std::os::unix::fs::symlink(journal_path(&real), &state_link).expect("symlink the journal");
    let state_s = state_link.display().to_string();

    let holder = format!("pid {}", first.pid());
    Run::at(scene.dir())
        .args(["apply", &link_s])
        .expect_exit(4)
        .expect_stderr_contains(&holder)
        .run();
    Run::at(scene.dir())
        .args(["apply", &pb_s, "--state", &state_s])
        .expect_exit(4)
        .expect_stderr_contains(&holder)
        .run();

    fs::write(scene.path("go"), b"").expect("create the go file");
    first.wait();
    Run::at(scene.dir())
        .args(["apply", &link_s])
        .expect_exit(0)
        .expect_stdout_contains("done in an earlier run")
        .run();
    Run::at(scene.dir())
        .args(["apply", &pb_s, "--state", &state_s])
        .expect_exit(0)
        .run();
    assert_eq!(scene.lines("ledger"), ["hold"], "the step ran once");
    assert!(
        !elsewhere.join(".runner").exists(),
        "no second journal beside the link"
    );
}

#[test]
fn a_journal_deleted_during_a_run_stops_it_before_anything_more_runs() {
    let scene = Scene::new("deleted").local("here").steps([
        step("wipe", "here", "rm -f {dir}/.runner/cutover.db"),
        step("after", "here", "echo after >> {dir}/after.ledger"),
    ]);
    let pb = scene.write().display().to_string();
    let journal = scene.journal();
    let journal_s = journal.display().to_string();
    // The message names the journal; nothing more runs.
    let r = scene
        .run(["apply", &pb])
        .expect_exit(1)
        .expect_stderr_contains(&journal_s)
        .expect_stderr_contains("deleted")
        .run();
    assert!(scene.lines("after.ledger").is_empty(), "{}", r.show());

    // The next apply does not start afresh beside the copy the run saved.
    let rescued = PathBuf::from(format!("{journal_s}.rescued"));
    let r = scene
        .run(["apply", &pb])
        .expect_exit(4)
        .expect_stderr_contains(format!("mv {} {journal_s}", rescued.display()))
        .run();
    assert!(
        scene.lines("after.ledger").is_empty(),
        "nothing ran:\n{}",
        r.show()
    );
    fs::rename(&rescued, &journal).expect("put the journal back");
    // `wipe` ended unrecorded: it is in doubt, and it is not idempotent.
    scene
        .run(["apply", &pb])
        .expect_exit(1)
        .expect_stderr_contains("runner mark")
        .expect_journal("after", &[])
        .run();
    scene
        .run(["mark", &pb, "wipe", "done"])
        .expect_exit(0)
        .run();
    scene
        .run(["apply", &pb])
        .expect_exit(0)
        .expect_journal("after", &succeeded_on(&["here"]))
        .run();
    assert_eq!(scene.lines("after.ledger"), ["after"]);
}

#[test]
fn a_journal_replaced_during_the_last_step_fails_the_run() {
    // A copy of the journal put back in its place: another file under the same name.
    let scene = Scene::new("replaced").local("here").step(step(
        "restore",
        "here",
        "cp {dir}/.runner/cutover.db {dir}/copy.db && mv {dir}/copy.db {dir}/.runner/cutover.db",
    ));
    let pb = scene.write().display().to_string();
    // The message names the journal.
    scene
        .run(["apply", &pb])
        .expect_exit(1)
        .expect_stderr_contains(scene.journal().display().to_string())
        .expect_stderr_contains("replaced")
        .run();
}

/// A cutover on one ssh target `web` whose point of no return appends to `ledger`.
fn cutover_steps(scene: Scene) -> Scene {
    scene.var("web", "ledger", "{dir}/ledger").steps([
        step("look", "web", "true").key("idempotent", "true"),
        step("switch", "web", "echo switch >> {{ ledger }}").key("point_of_no_return", "true"),
    ])
}

#[test]
fn a_copied_playbook_stops_before_touching_machines_another_journal_beside_it_changed() {
    let b = Sshd::start("127.0.23.2");
    let scene = cutover_steps(
        Scene::new("Acme")
            .file_name("acme.yaml")
            .ssh("web", "127.0.23.1"),
    );
    scene.apply().expect_exit(0).run();
    assert_eq!(scene.lines("ledger"), ["switch"]);

    // The same playbook copied for "another" cutover, same machine: stopped before any step;
    // idempotent steps are no concern.
    let scene = scene.file_name("acme-copy.yaml").name("Acme again");
    let a = scene.sshd("web");
    let identity = format!("ssh://{}@{}:{}", a.user(), a.host(), a.port());
    let mut refused = scene.apply().expect_exit(4).expect_stderr_lacks("`look`");
    for want in [
        ".runner/acme.db",
        "`switch`",
        identity.as_str(),
        "target `web`",
        "--accept-changed",
        "runner apply acme.yaml",
    ] {
        refused = refused.expect_stderr_contains(want);
    }
    refused.expect_journal("switch", &[]).run();
    assert_eq!(scene.lines("ledger"), ["switch"], "nothing ran");

    // The operator decides: it runs, and a resume of the copy is not stopped again.
    scene.apply_with(&["--accept-changed"]).expect_exit(0).run();
    assert_eq!(scene.lines("ledger"), ["switch", "switch"]);
    scene.apply().expect_exit(0).run();

    // A copy for a new customer, on other machines, is not bothered.
    let scene = scene
        .file_name("globex.yaml")
        .name("Globex")
        .ssh_to("web", b);
    scene
        .apply()
        .expect_exit(0)
        .expect_journal("switch", &succeeded_on(&["web"]))
        .run();
    assert_eq!(scene.lines("ledger"), ["switch", "switch", "switch"]);
}
