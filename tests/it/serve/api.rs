//! The JSON API says exactly what `runner status` prints, one entry per cutover in the order given,
//! and serving writes nothing.

use super::*;

/// A status view without "now", which differs between any two readings (and so does the next
/// step's earliest start when that is now).
/// Without what depends on the instant each was asked: `now`, and the schedule of what is left
/// with its fit, which are computed from now.
fn without_now(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("now");
        o.remove("fit");
        if let Some(steps) = o.get_mut("schedule").and_then(Value::as_array_mut) {
            for s in steps.iter_mut().filter_map(Value::as_object_mut) {
                s.remove("start");
                s.remove("end");
            }
        }
        if let Some(next) = o.get_mut("next").and_then(Value::as_object_mut) {
            if next.get("now") == Some(&json!(true)) {
                next.remove("earliest");
            }
        }
    }
    v
}

fn status_json(pb: &Path) -> Value {
    let name = pb.file_name().expect("a file name").to_string_lossy();
    let r = runner(
        &["status", &name, "--format", "json"],
        pb.parent().expect("playbook folder"),
        &[],
    );
    assert_eq!(r.code, 0, "status: {}", r.stderr);
    serde_json::from_str(&r.stdout).expect("status prints JSON")
}

/// The files' bytes; an empty file counts as none (a reader of a WAL journal may create an
/// empty write-ahead log, which holds nothing).
fn files_bytes(paths: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    paths
        .iter()
        .map(|p| fs::read(p).ok().filter(|b| !b.is_empty()))
        .collect()
}

#[test]
fn api_status_is_exactly_what_runner_status_prints_and_nothing_is_written() {
    let dir = workdir();
    let pb = local_cutover(dir.path());
    let applied = runner(&["apply", "cutover.yaml"], dir.path(), &[]);
    assert_eq!(applied.code, 1, "the copy step fails: {}", applied.stderr);
    let journal = dir.path().join(".runner/cutover.db");
    let written = [
        journal.clone(),
        dir.path().join(".runner/cutover.db-wal"),
        dir.path().join(".runner/cutover.lock"),
    ];
    // What the CLI says, read first: `status` and `report` may checkpoint the journal.
    let expected = without_now(status_json(&pb));
    let cli_report = runner(
        &["report", "cutover.yaml", "--format", "html"],
        dir.path(),
        &[],
    );
    assert_eq!(cli_report.code, 0, "{}", cli_report.stderr);
    let before = files_bytes(&written);

    let serve = Serve::start(&["cutover.yaml", "--listen", "127.0.0.1:0"], dir.path());

    let all = serve.get("/api/status", &[]);
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(
        all.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let all: Value = serde_json::from_str(&all.body).expect("JSON");
    let all = all.as_array().expect("one entry per cutover");
    assert_eq!(all.len(), 1);
    assert_eq!(without_now(all[0].clone()), expected);
    for which in ["1", "Acme%20file%20server", "cutover"] {
        let one = serve.get(&format!("/api/status/{which}"), &[]);
        assert_eq!(one.status, 200, "{which}: {}", one.body);
        let one: Value = serde_json::from_str(&one.body).expect("JSON");
        assert_eq!(without_now(one), expected, "/api/status/{which}");
    }
    assert_eq!(serve.get("/api/status/2", &[]).status, 404);
    assert_eq!(serve.get("/api/status/nope", &[]).status, 404);

    let page = serve.get("/", &[]);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("new EventSource(\"events\")"),
        "{}",
        page.body
    );
    assert!(page.body.contains("name=\"viewport\""));

    let report = serve.get("/report/1", &[]);
    assert_eq!(report.status, 200);
    assert_eq!(
        report.body, cli_report.stdout,
        "the report page is `report --format html`"
    );
    assert!(
        report.body.contains("name=\"viewport\""),
        "the report reads on a phone"
    );

    // The page's own reader has had its look too.
    let page_data = serve.get("/api/page", &[]);
    assert_eq!(page_data.status, 200);
    let after = files_bytes(&written);
    for ((path, b), a) in written.iter().zip(&before).zip(&after) {
        assert!(
            a == b,
            "serving changed {} (before: {:?} bytes, after: {:?})",
            path.display(),
            b.as_ref().map(Vec::len),
            a.as_ref().map(Vec::len)
        );
    }
}

#[test]
fn several_cutovers_are_one_entry_each_in_the_order_given() {
    let dir = workdir();
    local_cutover(dir.path());
    let applied = runner(&["apply", "cutover.yaml"], dir.path(), &[]);
    assert_eq!(applied.code, 1, "{}", applied.stderr);
    let other = dir.path().join("other");
    fs::create_dir(&other).expect("a second folder");
    let second = local_cutover(&other);
    let text = fs::read_to_string(&second).expect("read");
    fs::write(&second, text.replace("Acme file server", "Acme mail")).expect("rename");

    let serve = Serve::start(
        &[
            "cutover.yaml",
            "other/cutover.yaml",
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    let all: Value = serde_json::from_str(&serve.get("/api/status", &[]).body).expect("JSON");
    let names: Vec<(&str, bool)> = all
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| {
            (
                v["playbook"].as_str().expect("a name"),
                v["applied"].as_bool().expect("applied"),
            )
        })
        .collect();
    assert_eq!(names, [("Acme file server", true), ("Acme mail", false)]);
    let by_name: Value =
        serde_json::from_str(&serve.get("/api/status/Acme%20mail", &[]).body).expect("JSON");
    assert_eq!(by_name["path"], json!("other/cutover.yaml"));
    assert_eq!(serve.get("/api/status/3", &[]).status, 404);
    // Never applied: no report yet, said as such.
    let report = serve.get("/report/2", &[]);
    assert_eq!(report.status, 404);
    assert!(report.body.contains("not been applied"), "{}", report.body);
}
