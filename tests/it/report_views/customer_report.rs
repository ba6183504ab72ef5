//! `runner report` in Markdown, HTML and JSON has the runs, attempts, failures, overrides, output
//! and people, escaped and self-contained, and only its own playbook's runs.

use super::*;

#[test]
fn markdown_report_has_failures_overrides_output_and_people() {
    let f = fixture();
    let md = report::report(&f.pb, &f.journal, &f.runs_dir, ReportFormat::Markdown).unwrap();

    assert!(
        md.starts_with("# Cutover report: Acme file server move"),
        "{md}"
    );
    assert!(md.contains("Move the shares from fs1 to fs2."), "{md}");
    // The failure: exit code and message in the attempt row. The message's leading `\\`
    // is Markdown-escaped so that a viewer shows both backslashes.
    let row = md
        .lines()
        .find(|l| {
            l.contains("**failed**") && l.contains(r"robocopy reported errors on \\\fs2\data")
        })
        .unwrap_or_else(|| panic!("no failed attempt row in\n{md}"));
    assert!(row.contains("| 3 |"), "{row}");
    // The override reason, at the top and in its run.
    let reason = "customer approved a late finish by phone (J. Smith)";
    assert!(md.matches(reason).count() >= 2, "{md}");
    assert!(md.contains("**Business-hours override**"), "{md}");
    // Output tail: the last 15 of 20 lines, with their stream.
    assert!(md.contains("stdout | copied file 20"), "{md}");
    assert!(md.contains("stderr | ERROR 112 not enough space"), "{md}");
    assert!(md.contains("stdout | copied file 06"), "{md}");
    assert!(!md.contains("copied file 05"), "{md}");
    assert!(md.contains("(last 15 lines)"), "{md}");
    assert!(md.contains("stdout | shares stopped"), "{md}");
    // A pair without a log file.
    assert!(md.contains("no output recorded"), "{md}");
    // Who ran what, when (local time of the window), with which runner.
    assert!(md.contains("apply by alice on jump1"), "{md}");
    assert!(md.contains("bob on jump1"), "{md}");
    assert!(md.contains("customer opened Q3.xlsx"), "{md}");
    assert!(md.contains("Tue 1 Dec 2026 00:00 CET"), "{md}");
    assert!(md.contains(env!("CARGO_PKG_VERSION")), "{md}");
    assert!(md.contains("rollback"), "{md}");
    // The run left open by the dead runner says so.
    assert!(md.contains("**not recorded**"), "{md}");
    // Summary counts: stop-shares (rolled back pair), copy-data done, confirm done,
    // switch-dns in doubt, tell-dc pending.
    assert!(
        md.contains("2 of 5 done, 1 in doubt, 1 rolled back, 1 pending"),
        "{md}"
    );
    // No credential reference is added to the record.
    assert!(!md.contains("ACME_DC_PASSWORD"), "{md}");
}

#[test]
fn html_report_is_self_contained_and_escaped() {
    let f = fixture();
    let html = report::report(&f.pb, &f.journal, &f.runs_dir, ReportFormat::Html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<style>"));
    assert!(!html.contains("<link"));
    assert!(!html.contains("<script"), "output must not become markup");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(html.contains("class=\"alert\""));
    assert!(html.contains("customer approved a late finish by phone (J. Smith)"));
    assert!(html.contains("tr class=\"fail\""));
    assert!(!html.contains("ACME_DC_PASSWORD"));
}

#[test]
fn markdown_report_does_not_pass_output_markup_through() {
    let f = fixture();
    let md = report::report(&f.pb, &f.journal, &f.runs_dir, ReportFormat::Markdown).unwrap();
    // Output is inside a fenced block, where a viewer shows it literally.
    assert_eq!(md.matches("<script>").count(), 1, "{md}");
    let script = md.find("<script>").unwrap();
    let fence_start = md[..script].rfind("```text").unwrap();
    let fence_end = script + md[script..].find("```").unwrap();
    assert!(
        !md[fence_start + 7..script].contains("```"),
        "the fence closes before the output line"
    );
    assert!(md[fence_start..fence_end].contains("stderr | <script>"));
}

#[test]
fn json_report_has_runs_attempts_and_summary() {
    let f = fixture();
    let text = report::report(&f.pb, &f.journal, &f.runs_dir, ReportFormat::Json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["playbook"]["name"], "Acme file server move");
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    assert_eq!(runs[0]["user"], "alice");
    assert_eq!(runs[0]["command"], "apply");
    assert_eq!(runs[0]["outcome"], "failed");
    assert_eq!(runs[0]["had_failures"], true);
    assert_eq!(runs[2]["marks"][0]["reason"], "customer opened Q3.xlsx");
    assert_eq!(
        runs[3]["steps"][0]["pairs"][0]["attempts"][0]["kind"],
        "rollback"
    );

    let night1 = runs[0]["steps"].as_array().unwrap();
    assert_eq!(night1.len(), 2);
    assert_eq!(night1[0]["id"], "stop-shares");
    assert_eq!(night1[0]["pairs"].as_array().unwrap().len(), 2);
    let copy = &night1[1]["pairs"][0];
    assert_eq!(copy["target"], "fs2");
    let attempt = &copy["attempts"][0];
    assert_eq!(attempt["state"], "failed");
    assert_eq!(attempt["exit_code"], 3);
    assert_eq!(attempt["message"], FAIL_MESSAGE);
    assert_eq!(attempt["duration_secs"], 540);
    assert_eq!(copy["output"]["status"], "recorded");
    assert_eq!(copy["output"]["lines"].as_array().unwrap().len(), 15);
    assert_eq!(copy["output"]["lines"][14]["stream"], "stdout");
    assert_eq!(copy["output"]["lines"][14]["text"], "copied file 20");
    assert_eq!(runs[0]["events"][0]["kind"], "override");

    // The second night: the retry and its check.
    let night2 = runs[1]["steps"].as_array().unwrap();
    let kinds: Vec<&str> = night2[0]["pairs"][0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["run", "check"]);
    assert_eq!(runs[1]["ended_at"], serde_json::Value::Null);

    let s = &v["summary"];
    assert_eq!(s["runs"], 4);
    assert_eq!(s["overrides"], 1);
    assert_eq!(s["steps_done"], 2);
    assert_eq!(s["steps_pending"], 1);
    assert_eq!(s["failed_attempts"], 1);
    assert_eq!(s["rollback_attempts"], 1);
    assert_eq!(s["attempts"], 7);
    // 610 + (87_010 - 86_400) + 2 + 30.
    assert_eq!(s["working_secs"], 610 + 610 + 2 + 30);
}

#[test]
fn report_of_an_empty_journal_says_nothing_ran() {
    let dir = tempfile::tempdir().unwrap();
    let pb = load_playbook(dir.path());
    let journal = Journal::open(&dir.path().join("j.db")).unwrap();
    let md = report::report(
        &pb,
        &journal,
        &dir.path().join("runs"),
        ReportFormat::Markdown,
    )
    .unwrap();
    assert!(md.contains("never applied"), "{md}");
    assert!(md.contains("0 of 5 done, 5 pending"), "{md}");
}

#[test]
fn markdown_report_shows_code_in_override_text_as_code_not_escaped_backticks() {
    let f = fixture();
    f.journal
        .record_event(&NewEvent {
            run: f.runs[1].clone(),
            at: t(700),
            step_id: Some("copy-data".into()),
            kind: EventKind::Override,
            detail:
                "window overridden by alice on jump1 for step `copy-data`: the *customer* asked"
                    .into(),
        })
        .unwrap();
    let md = report::report(&f.pb, &f.journal, &f.runs_dir, ReportFormat::Markdown).unwrap();
    assert!(
        md.contains("for step `copy-data`: the \\*customer\\* asked"),
        "{md}"
    );
    assert!(!md.contains("\\`"), "{md}");
    // Key/value tables carry a real header row.
    assert!(!md.contains("| | |\n|---|---|"), "{md}");
}

#[test]
fn the_playbooks_of_one_folder_keep_their_runs_apart_and_old_runs_are_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let playbook = |echo: &str| {
        format!(
            "name: {echo}\nwindow:\n  business_hours: []\ntargets:\n  here:\n    transport: local\nsteps:\n  - {{ id: say, on: here, run: 'echo said-{echo}', idempotent: true }}\n"
        )
    };
    std::fs::write(dir.path().join("a.yaml"), playbook("alpha")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), playbook("bravo")).unwrap();
    for f in ["a.yaml", "b.yaml"] {
        let r = common_cli::runner(&["apply", f], dir.path(), &[]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    }
    let runs = dir.path().join(".runner").join("runs");
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    // Each journal has its own runs folder, with one run each.
    assert_eq!(names(&runs), ["a", "b"]);
    assert_eq!(names(&runs.join("a")).len(), 1);
    assert_eq!(names(&runs.join("b")).len(), 1);
    let report = |f: &str| {
        let r = common_cli::runner(&["report", f, "--format", "markdown"], dir.path(), &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    };
    let a = report("a.yaml");
    assert!(a.contains("said-alpha") && !a.contains("said-bravo"), "{a}");
    // A run recorded before runs were kept per journal (`.runner/runs/<run>`) is still read.
    let run = names(&runs.join("b")).remove(0);
    std::fs::rename(runs.join("b").join(&run), runs.join(&run)).unwrap();
    let b = report("b.yaml");
    assert!(b.contains("said-bravo"), "{b}");
}
