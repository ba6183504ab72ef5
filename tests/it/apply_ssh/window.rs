//! Business hours stop `apply` (an override is journaled with its reason), `--when-closed wait`
//! waits, and steps allowed in business hours run inside them.

use super::*;

const NOON: &str = "2026-03-10T12:00:00Z";

/// Business hours every day 08:00 to 18:00 UTC.
fn window_scene(ip: &str, when_closed: &str, migrate: Step) -> Scene {
    Scene::new("window")
        .window(&format!(
            "window:\n  timezone: UTC\n  business_hours:\n    - {{ days: mon-sun, from: \"08:00\", to: \"18:00\" }}\n  when_closed: {when_closed}\n"
        ))
        .ssh("a", ip)
        .var("a", "ledger", "{dir}/ledger")
        .step(migrate.key("estimate", "10m"))
}

fn migrate() -> Step {
    step("migrate", "a", "echo migrate >> {{ ledger }}")
}

#[test]
fn the_window_stops_apply_and_an_override_is_journaled_with_its_reason() {
    let scene = window_scene("127.0.0.49", "stop", migrate());

    scene
        .apply()
        .env("RUNNER_NOW", NOON)
        .expect_exit(3)
        // The message says when the step may start.
        .expect_stderr_contains("may start Tue 10 Mar 2026 18:00")
        .expect_journal("migrate", &[])
        .run();
    assert!(
        scene.lines("ledger").is_empty(),
        "nothing may run in business hours"
    );
    assert_eq!(events(scene.dir(), "stopped").len(), 1);

    let reason = "customer approved the outage, ticket 4711";
    scene
        .apply_with(&["--override-window-all", "--reason", reason])
        .env("RUNNER_NOW", NOON)
        .expect_exit(0)
        .expect_journal("migrate", &[("a", "run", "succeeded")])
        .run();
    assert_eq!(scene.lines("ledger"), ["migrate"]);
    let overrides = events(scene.dir(), "override");
    assert_eq!(overrides.len(), 1, "{overrides:?}");
    assert_eq!(overrides[0].0.as_deref(), Some("migrate"));
    assert!(
        overrides[0].1.contains(reason),
        "the override records why: {overrides:?}"
    );
}

#[test]
fn when_closed_wait_waits_for_the_end_of_business_hours() {
    let scene = window_scene("127.0.0.50", "wait", migrate());
    // Two seconds before business hours end; the shifted clock advances in real time, so
    // apply waits about two seconds.
    scene
        .apply()
        .env("RUNNER_NOW", "2026-03-10T17:59:58Z")
        .expect_exit(0)
        .expect_journal("migrate", &[("a", "run", "succeeded")])
        .run();
    assert_eq!(scene.lines("ledger"), ["migrate"]);
    let waited = events(scene.dir(), "waited");
    assert_eq!(waited.len(), 1, "{waited:?}");
    assert!(waited[0].1.contains("18:00"), "{waited:?}");
    let conn = db(scene.dir());
    let started: String = conn
        .query_row(
            "SELECT started_at FROM attempts WHERE step_id = 'migrate'",
            [],
            |r| r.get(0),
        )
        .expect("read started_at");
    assert!(
        started.as_str() >= "2026-03-10T18:00:00",
        "the step started before business hours ended: {started}"
    );
}

#[test]
fn a_step_allowed_in_business_hours_runs_inside_them() {
    let scene = window_scene(
        "127.0.0.51",
        "stop",
        migrate().key("business_hours", "allow"),
    );
    scene
        .apply()
        .env("RUNNER_NOW", NOON)
        .expect_exit(0)
        .expect_journal("migrate", &[("a", "run", "succeeded")])
        .run();
    assert_eq!(scene.lines("ledger"), ["migrate"]);
    assert!(events(scene.dir(), "stopped").is_empty());
    assert!(events(scene.dir(), "override").is_empty());
}
