use super::*;

#[test]
fn windows_jobs_live_under_system_temp_and_keep_unsigned_exit_codes() {
    let run = RunId("20261130T230000Z-1".into());
    let f = Flavor::Windows(Shell::Cmd);
    let dir = f.job_dir(JOB_ROOT, &run, AttemptId(7));
    assert_eq!(dir, r"%SystemRoot%\Temp\runner-jobs\20261130T230000Z-1\7");
    assert_eq!(f.exit_code("-1"), Some(4_294_967_295));
    assert_eq!(f.exit_code("3010"), Some(3010));
    assert_eq!(Flavor::Posix.exit_code("-1"), Some(-1));
    assert!(f.remove_script(&dir).is_some());
    assert!(
        f.remove_script(r"C:\Windows").is_none(),
        "never removes outside the job root"
    );
}

#[test]
fn the_windows_launcher_starts_the_wrapper_outside_the_session() {
    let f = Flavor::Windows(Shell::Cmd);
    let script = f.launcher(
        r"%SystemRoot%\Temp\runner-jobs\r\1",
        "robocopy a b /MIR & exit /b 3",
    );
    // The command travels base64-encoded, never spliced into PowerShell source.
    assert!(!script.contains("robocopy"), "{script}");
    assert!(
        script.contains("([wmiclass]'Win32_Process').Create("),
        "{script}"
    );
    assert!(script.contains("call `\"%~dp0cmd.cmd`\""), "{script}");
    assert!(script.contains("echo %ERRORLEVEL%>"), "{script}");
    let ps = Flavor::Windows(Shell::PowerShell).launcher("x", "Get-Date");
    assert!(ps.contains("-File `\"%~dp0cmd.ps1`\""), "{ps}");
    assert!(f.kill_script("x").contains("taskkill.exe /T /F /PID"));
}

#[test]
fn quoting_survives_single_quotes() {
    assert_eq!(quote("it's"), r"'it'\''s'");
}

/// Runs a POSIX control script here, in `cwd`, as a target would.
fn sh_here(script: &str, cwd: &std::path::Path) -> std::process::Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn the_launcher_runs_the_job_where_an_attached_command_runs() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let job = dir.path().join("jobs/run-1/7");
    let job = job.to_str().unwrap();
    let script = Flavor::Posix.launcher(
        job,
        "echo 'hello'; echo oops >&2; echo data > export.pst; exit 7",
    );
    let st = sh_here(&script, &work);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let pid: u32 = String::from_utf8_lossy(&st.stdout).trim().parse().unwrap();
    assert!(pid > 1);
    // Wait for the status file: the job is quick.
    let status = std::path::Path::new(job).join("status");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !status.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "7");
    let file = |p: &str| std::fs::read_to_string(std::path::Path::new(job).join(p)).unwrap();
    assert_eq!(file("out"), "hello\n");
    assert_eq!(file("err"), "oops\n");
    // A relative path is the working directory's, not the job folder's.
    assert_eq!(
        std::fs::read_to_string(work.join("export.pst")).unwrap(),
        "data\n"
    );
    assert!(!std::path::Path::new(job).join("export.pst").exists());
    // The folders are private.
    use std::os::unix::fs::PermissionsExt;
    for d in chain(job) {
        let mode = std::fs::symlink_metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{d}");
    }
    // Removing the job removes the run's folder once it is empty.
    let rm = sh_here(
        &format!(
            "{}checked || exit 0\nrm -rf {}; rmdir {} 2>/dev/null; exit 0",
            guarded(job),
            quote(job),
            quote(&parent_of(job))
        ),
        &work,
    );
    assert!(rm.status.success());
    assert!(!dir.path().join("jobs/run-1").exists());
    assert!(dir.path().join("jobs").exists());
}

/// A folder of the chain that is a symlink, belongs to another user or is writable by
/// others is refused before anything is written to it or read from it.
#[test]
fn job_folders_that_are_not_private_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let job = |root: &str| format!("{}/{root}/run-1/7", dir.path().display());
    let refused = |script: &str, what: &str| {
        let out = sh_here(script, dir.path());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(3), "{what}: {err}");
        assert!(err.contains(UNSAFE), "{what}: {err}");
        err
    };
    // A root that is a symlink to a folder someone prepared.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("run-1/7")).unwrap();
    std::fs::write(elsewhere.join("run-1/7/status"), "0\n").unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.path().join("linked")).unwrap();
    let err = refused(
        &Flavor::Posix.launcher(&job("linked"), "true"),
        "symlink launcher",
    );
    assert!(err.contains("symbolic link"), "{err}");
    refused(
        &Flavor::Posix.status_script(&job("linked")),
        "symlink status",
    );
    refused(&Flavor::Posix.kill_script(&job("linked")), "symlink kill");
    // A run folder writable by everybody.
    std::fs::create_dir_all(dir.path().join("open/run-1")).unwrap();
    std::fs::set_permissions(
        dir.path().join("open/run-1"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let err = refused(
        &Flavor::Posix.launcher(&job("open"), "true"),
        "open launcher",
    );
    assert!(err.contains("writable by other users"), "{err}");
    // A job folder that belongs to another user (the tests run as root, who may chown).
    let planted = dir.path().join("planted/run-1/7");
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::write(planted.join("status"), "0\n").unwrap();
    let path = std::ffi::CString::new(planted.to_str().unwrap()).unwrap();
    // SAFETY: chown(2) with a valid NUL-terminated path.
    let chowned = unsafe { libc::chown(path.as_ptr(), 65534, 65534) };
    assert_eq!(chowned, 0, "chown to nobody (the tests run as root)");
    let err = refused(
        &Flavor::Posix.status_script(&job("planted")),
        "planted status",
    );
    assert!(err.contains("belongs to uid 65534"), "{err}");
    // Nothing was written through the refused folders.
    assert!(!elsewhere.join("run-1/7/cmd.sh").exists());
    assert!(!dir.path().join("open/run-1/7").exists());
}
