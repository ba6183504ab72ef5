//! A receiver that refuses or is dead is journaled and never changes the run's exit code.

use super::*;

#[test]
fn a_refusing_receiver_is_journaled_and_leaves_the_exit_code_alone() {
    let hook = Receiver::start(500);
    let (dir, _) = failing_playbook(&format!(
        "  - webhook: {}\n    on: [step-failed]",
        hook.url("/hook")
    ));
    apply(dir.path(), &[])
        // The step's failure decides the exit code.
        .expect_exit(1)
        .run();
    // The first try, then the retry the end of the run brings forward.
    assert_eq!(hook.requests().len(), 2);
    let rows = journal(dir.path())
        .notifications(None)
        .expect("notifications");
    let tries: Vec<(&str, u32)> = rows
        .iter()
        .map(|r| (r.outcome.as_str(), r.attempt))
        .collect();
    assert_eq!(tries, [("failed", 1), ("given-up", 2)]);
    assert_eq!(
        rows[0].detail,
        "the receiver answered HTTP 500: receiver says no; next try in 30s"
    );

    let status = Run::at(dir.path())
        .args(["status", "acme.yaml", "--format", "json"])
        .env("RUNNER_NOW", EVENING)
        .expect_exit(0)
        .run();
    let v: Value = serde_json::from_str(&status.stdout).expect("status JSON");
    let n = &v["notifications"];
    assert_eq!(n.as_array().map(Vec::len), Some(1), "{n}");
    assert_eq!(n[0]["event"], "step-failed");
    assert_eq!(n[0]["outcome"], "given-up");
    assert_eq!(n[0]["tries"], 2);
    Run::at(dir.path())
        .args(["status", "acme.yaml"])
        .env("RUNNER_NOW", EVENING)
        .expect_exit(0)
        .expect_stdout_contains("Notifications (run ")
        .expect_stdout_contains(": 0 of 1 delivered")
        .run();
    Run::at(dir.path())
        .args(["report", "acme.yaml"])
        .expect_exit(0)
        .expect_stdout_contains("## Notifications")
        .expect_stdout_contains("0 of 1 delivered.")
        .run();
    Run::at(dir.path())
        .args(["report", "acme.yaml", "--format", "html"])
        .expect_exit(0)
        .expect_stdout_contains("Notifications")
        .run();
    let json_report = Run::at(dir.path())
        .args(["report", "acme.yaml", "--format", "json"])
        .expect_exit(0)
        .run();
    let r: Value = serde_json::from_str(&json_report.stdout).expect("report JSON");
    assert_eq!(r["notifications"][0]["outcome"], "given-up");
}

#[test]
fn a_dead_receiver_does_not_change_a_successful_run() {
    // Nothing listens on this port: every try fails at once.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address").port()
    };
    let scene = acme(&format!(
        "  - webhook: http://127.0.0.1:{port}/hook\n    on: [run-finished]\n"
    ))
    .step(step("one", "box", "echo fine"));
    scene.write();
    apply(scene.dir(), &[]).expect_exit(0).run();
    let rows = journal(scene.dir())
        .notifications(None)
        .expect("notifications");
    let tries: Vec<(&str, u32)> = rows
        .iter()
        .map(|r| (r.outcome.as_str(), r.attempt))
        .collect();
    assert_eq!(tries, [("failed", 1), ("given-up", 2)]);
    assert!(
        rows[0]
            .detail
            .starts_with("cannot connect to http://127.0.0.1:"),
        "{}",
        rows[0].detail
    );
}
