//! A failed step posts a CloudEvent with masked output to a webhook, and ntfy gets a readable
//! message with title, priority and tags.

use super::*;

fn run_id(dir: &Path) -> String {
    journal(dir)
        .runs()
        .expect("runs")
        .last()
        .expect("a run")
        .id
        .0
        .clone()
}

#[test]
fn a_failed_step_posts_a_cloudevent_with_masked_output_to_the_webhook() {
    let hook = Receiver::start(200);
    let (dir, _) = failing_playbook(&format!(
        "  - webhook: {}\n    on: [step-failed, run-finished]",
        hook.url("/hook/acme")
    ));
    apply(dir.path(), &[]).expect_exit(1).run();

    let reqs = hook.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let run = run_id(dir.path());
    let host = host();
    let failed = &reqs[0];
    assert_eq!(
        (failed.method.as_str(), failed.path.as_str()),
        ("POST", "/hook/acme")
    );
    assert_eq!(
        failed.header("content-type"),
        Some("application/cloudevents+json; charset=utf-8")
    );
    let ev = failed.json();
    let time = ev["time"].as_str().expect("time").to_string();
    assert!(
        time.starts_with("2026-12-01T20:0") && time.ends_with('Z'),
        "{time}"
    );
    assert_eq!(
        ev,
        json!({
            "specversion": "1.0",
            "id": format!("{run}.1.step-failed"),
            "source": format!("runner://{host}/acme"),
            "type": "runner.step.failed",
            "subject": "copy@box",
            "time": time,
            "datacontenttype": "application/json",
            "data": {
                "playbook": "Acme night",
                "playbook_file": "acme.yaml",
                "run_id": run,
                "host": host,
                "summary": "step `copy` failed on `box` (exit code 3)",
                "step": "copy",
                "step_title": "Copy the data",
                "target": "box",
                "exit_code": 3,
                "outcome": null,
                "business_hours_at": null,
                "next_start": null,
                "output": ["copying with ********", "disk full"],
                "next": "fix the cause, then: runner apply acme.yaml"
            }
        })
    );
    let fin = reqs[1].json();
    assert_eq!(fin["type"], "runner.run.finished");
    assert_eq!(fin["id"], format!("{run}.2.run-finished"));
    assert_eq!(fin["data"]["outcome"], "failed");
    assert_eq!(fin["data"]["exit_code"], 1);
    assert_eq!(
        fin["data"]["next"],
        "fix the cause, then: runner apply acme.yaml"
    );
    for r in &reqs {
        assert_no_secret(&r.body);
    }

    let rows = journal(dir.path())
        .notifications(None)
        .expect("notifications");
    let outcomes: Vec<(&str, &str, u32)> = rows
        .iter()
        .map(|r| (r.event.as_str(), r.outcome.as_str(), r.attempt))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("step-failed", "delivered", 1),
            ("run-finished", "delivered", 1)
        ]
    );
    assert_eq!(
        rows[0].sink,
        format!("webhook http://127.0.0.1:{}", hook.port)
    );
}

#[test]
fn ntfy_gets_a_readable_message_with_title_priority_and_tags() {
    let topic = Receiver::start(200);
    let (dir, _) = failing_playbook(&format!(
        "  - ntfy: {}\n    on: [step-failed]",
        topic.url("/acme-cutover")
    ));
    apply(dir.path(), &[]).expect_exit(1).run();
    let reqs = topic.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/acme-cutover")
    );
    assert_eq!(
        r.header("title"),
        Some("Acme night: step `copy` failed on `box` (exit code 3)")
    );
    assert_eq!(r.header("priority"), Some("high"));
    assert_eq!(r.header("tags"), Some("rotating_light,runner,step-failed"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let run = run_id(dir.path());
    let host = host();
    let time_line = r
        .body
        .lines()
        .find(|l| l.starts_with("Time:"))
        .expect("a time line")
        .to_string();
    assert_eq!(
        r.body,
        format!(
            "step `copy` failed on `box` (exit code 3)\n\n\
             Event:     step-failed\n\
             Playbook:  Acme night (acme.yaml)\n\
             Run:       {run} on {host}\n\
             Step:      copy (Copy the data)\n\
             Target:    box\n\
             Exit code: 3\n\
             {time_line}\n\
             \n\
             Last output:\n  copying with ********\n  disk full\n\
             \n\
             Next: fix the cause, then: runner apply acme.yaml\n"
        )
    );
}
