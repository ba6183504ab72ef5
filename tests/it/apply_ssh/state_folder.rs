//! A state folder that cannot be used, or cannot be written, is invalid input naming the folder.

use super::*;

/// One local target `here` and a step `one` that does nothing.
fn local_scene(name: &str) -> Scene {
    Scene::new(name)
        .local("here")
        .step(step("one", "here", "true"))
}

#[test]
fn a_state_folder_that_cannot_be_used_is_invalid_input_naming_the_path() {
    let scene = local_scene("state folder");
    let pb = scene.write().display().to_string();
    let state = scene.path(".runner");
    let state_s = state.display().to_string();
    // A file where the folder should be, then a symbolic link to nowhere: `apply` and
    // `rollback` name the path and do not say to wait.
    fs::write(&state, b"not a folder").expect("write a file");
    for args in [vec!["apply", &pb], vec!["rollback", &pb, "--yes"]] {
        scene
            .run(args)
            .expect_exit(2)
            .expect_stderr_contains(&state_s)
            .expect_stderr_lacks("wait for it")
            .run();
    }
    fs::remove_file(&state).expect("remove the file");
    std::os::unix::fs::symlink(scene.path("gone").join("state"), &state).expect("symlink");
    scene
        .run(["apply", &pb])
        .expect_exit(2)
        .expect_stderr_contains(&state_s)
        .expect_stderr_contains("symbolic link")
        .run();
    // A folder where the journal file should be: the message names the path and what to do.
    fs::remove_file(&state).expect("remove the symlink");
    fs::create_dir_all(scene.journal()).expect("a folder in the journal's place");
    for command in ["apply", "status"] {
        scene
            .run([command, &pb])
            .expect_exit(2)
            .expect_stderr_contains("cutover.db")
            .expect_stderr_contains("--state")
            .run();
    }
}

#[test]
fn a_state_folder_without_write_permission_is_invalid_input_naming_the_path() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // Root may write anywhere, so the runner runs as `nobody` (uid 65534) here: the tests run
    // as root (README), which may switch to any user.
    let scene = local_scene("read-only state");
    let pb = scene.write();
    let state = scene.path(".runner");
    fs::create_dir(&state).expect("create the state folder");
    for p in [scene.dir(), state.as_path()] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["apply", &pb.display().to_string()])
        .current_dir(scene.dir())
        .env_remove("RUNNER_NOW")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run runner as nobody (the tests run as root)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&state.display().to_string())
            && stderr.contains("--state")
            && !stderr.contains("wait for it"),
        "{stderr}"
    );
    assert!(
        fs::read_dir(&state).expect("read").next().is_none(),
        "nothing was written"
    );
}
