//! Recorded Windows messages: every recorded response parses and means what it should, and our
//! requests have the shape of the recorded ones.

use super::*;

/// Every (request, response) pair of the pypsrp recordings.
fn recorded_pairs() -> Vec<(String, String, String)> {
    let dir = fixtures().join("pypsrp");
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for m in doc["messages"].as_sequence().unwrap() {
            out.push((
                file.clone(),
                m["request"].as_str().unwrap().to_string(),
                m["response"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

#[test]
fn every_recorded_response_parses() {
    let pairs = recorded_pairs();
    assert!(pairs.len() >= 60, "{}", pairs.len());
    let mut unrelated = Vec::new();
    for (file, req, resp) in &pairs {
        let r = response::parse(resp.as_bytes()).unwrap_or_else(|e| panic!("{file}: {e}"));
        // Each reply names the request it answers (the config Get included)...
        let id = winrm_server::parse_request(req).message_id;
        assert!(r
            .relates_to
            .as_deref()
            .is_some_and(|x| x.starts_with("uuid:")));
        if r.relates_to.as_deref() != Some(id.as_str()) {
            unrelated.push(file.clone());
        }
    }
    // ...except the last one of the unicode recording, whose request was re-recorded.
    assert_eq!(unrelated, ["test_winrs_unicode.yml"]);
    for rel in [
        "winrb/open_shell_v1.xml",
        "winrb/open_shell_v2.xml",
        "winrb/wmi_error_v2.xml",
        "masterzen/create_shell_response.xml",
        "masterzen/command_fault_filename_too_long.xml",
        "masterzen/receive_fault_operation_timeout.xml",
        "pywinrm/open_shell_response.xml",
        "pywinrm/receive_response_ipconfig.xml",
        "pywinrm/receive_response_ps_stderr_clixml.xml",
    ] {
        let bytes = std::fs::read(fixtures().join(rel)).unwrap();
        response::parse(&bytes).unwrap_or_else(|e| panic!("{rel}: {e}"));
    }
}

fn parse_fixture(rel: &str) -> response::Response {
    response::parse(&std::fs::read(fixtures().join(rel)).unwrap()).unwrap()
}

/// The responses of one recording, in order.
fn responses(file: &str) -> Vec<response::Response> {
    recorded_pairs()
        .into_iter()
        .filter(|(f, _, _)| f == file)
        .map(|(_, _, r)| response::parse(r.as_bytes()).unwrap())
        .collect()
}

fn stdout_of(rs: &[response::Response]) -> Vec<u8> {
    rs.iter()
        .flat_map(|r| r.chunks.iter())
        .filter(|c| c.stream == Stream::Stdout)
        .flat_map(|c| c.data.clone())
        .collect()
}

#[test]
fn recorded_responses_mean_what_they_should() {
    // The standard flow: shell id from the selector, "hi", exit 0.
    let std = responses("test_winrs_standard.yml");
    assert!(std[0].shell_id.as_deref().is_some_and(|s| s.len() == 36));
    assert!(std[1].command_id.is_some());
    assert_eq!(stdout_of(&std), b"hi\r\n");
    assert_eq!(std[2].done, Some(true));
    assert_eq!(std[2].exit_code, Some(0));

    let rc = responses("test_winrs_stderr_rc.yml");
    assert_eq!(rc[2].exit_code, Some(1));
    assert!(rc[2]
        .chunks
        .iter()
        .any(|c| c.stream == Stream::Stderr && !c.data.is_empty()));

    // Partial output, two TimedOut faults, then the rest and Done.
    let slow = responses("test_winrs_operation_timeout.yml");
    let receives: Vec<_> = slow
        .iter()
        .filter(|r| r.done.is_some() || r.fault.is_some())
        .collect();
    assert_eq!(receives[0].done, Some(false));
    assert!(receives[1].fault.as_ref().unwrap().is_timed_out());
    assert!(receives[2].fault.as_ref().unwrap().is_timed_out());
    assert_eq!(receives[3].done, Some(true));

    // UTF-8 split over two Stream elements decodes after joining.
    let uni = responses("test_winrs_unicode.yml");
    let text = String::from_utf8(stdout_of(&uni)).unwrap();
    assert!(text.contains("こんにちは"), "{text}");

    let bad = responses("test_winrs_bad_cmd_id.yml");
    let f = bad.iter().find_map(|r| r.fault.clone()).unwrap();
    assert_eq!(f.subcode.as_deref(), Some("InvalidSelectors"));
    assert_eq!(f.wsman_code, Some(2150858843));
    assert!(!f.is_timed_out());

    let poll = responses("test_winrs_fail_poll_process.yml");
    let f = poll.iter().find_map(|r| r.fault.clone()).unwrap();
    assert_eq!(f.wsman_code, Some(87));
    assert_eq!(f.provider.as_deref(), Some("Shell cmd plugin"));
    assert_eq!(f.message.as_deref(), Some("The parameter is incorrect."));

    let nocmd = responses("test_winrs_no_cmd_shell.yml");
    let f = nocmd.iter().find_map(|r| r.fault.clone()).unwrap();
    assert_eq!(f.wsman_code, Some(2147942402));
    assert!(f.hint().unwrap().contains("not found"));

    // WinRM 1.1: single quotes, `uuid:` prefix, no rsp:Shell.
    let v1 = parse_fixture("winrb/open_shell_v1.xml");
    assert_eq!(
        v1.shell_id.as_deref(),
        Some("uuid:739990FF-1492-4CDD-80BB-6E07ADB06D85")
    );
    let v2 = parse_fixture("winrb/open_shell_v2.xml");
    assert!(v2.shell_id.is_some());
    let quota = parse_fixture("winrb/wmi_error_v2.xml").fault.unwrap();
    assert_eq!(quota.subcode.as_deref(), Some("QuotaLimit"));
    assert_eq!(quota.wsman_code, Some(2150859173));
    assert!(quota.message.unwrap().contains("maximum number of 30"));

    let long = parse_fixture("masterzen/command_fault_filename_too_long.xml")
        .fault
        .unwrap();
    assert_eq!(long.wsman_code, Some(2147942606));
    assert!(long.hint().unwrap().contains("script"));
    let to = parse_fixture("masterzen/receive_fault_operation_timeout.xml")
        .fault
        .unwrap();
    assert!(to.is_timed_out());
    let created = parse_fixture("masterzen/create_shell_response.xml");
    assert!(created.shell_id.is_some());

    let ipconfig = parse_fixture("pywinrm/receive_response_ipconfig.xml");
    assert_eq!(ipconfig.done, Some(true));
    assert_eq!(ipconfig.exit_code, Some(0));
    assert!(String::from_utf8_lossy(&stdout_of(&[ipconfig])).contains("Windows IP Configuration"));
    let clixml = parse_fixture("pywinrm/receive_response_ps_stderr_clixml.xml");
    assert_eq!(clixml.exit_code, Some(1));
    let err: Vec<u8> = clixml
        .chunks
        .iter()
        .filter(|c| c.stream == Stream::Stderr)
        .flat_map(|c| c.data.clone())
        .collect();
    assert!(String::from_utf8_lossy(&err).starts_with("#< CLIXML"));
}

/// Element names (with namespace URIs) and the attribute names they carry, plus the names of
/// options and selectors: what a server looks at, without values.
fn shape(xml: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut reader = NsReader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    loop {
        let (ns, ev) = reader.read_resolved_event().unwrap();
        let ns = match ns {
            ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
            _ => String::new(),
        };
        let (e, empty) = match ev {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                path.pop();
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
        let name = format!("{{{ns}}}{local}");
        let joined = if path.is_empty() {
            name.clone()
        } else {
            format!("{}/{name}", path.join("/"))
        };
        out.insert(joined.clone());
        for a in e.attributes().flatten() {
            let key = String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned();
            let is_xmlns = a.key.as_ref().starts_with(b"xmlns");
            if key == "mustUnderstand" || key == "lang" || is_xmlns {
                continue;
            }
            if key == "Name" {
                let v = a.unescape_value().unwrap().into_owned();
                out.insert(format!("{joined}[Name={v}]"));
            } else {
                out.insert(format!("{joined}@{key}"));
            }
        }
        if !empty {
            path.push(name);
        }
    }
    out
}

#[test]
fn our_requests_have_the_shape_of_recorded_ones() {
    let ep = soap::Endpoint {
        to: "http://192.0.2.1:5985/wsman".into(),
        operation_timeout_secs: 20,
    };
    let id = soap::message_id();
    let ours = [
        ("Create", soap::create_shell(&ep, &id, &[])),
        (
            "Command",
            soap::command(&ep, &id, "uuid:S", "echo hi", false),
        ),
        ("Send", soap::send(&ep, &id, "S", "C", b"data", true)),
        ("Receive", soap::receive(&ep, &id, "S", "C")),
        (
            "Signal",
            soap::signal(&ep, &id, "S", "C", soap::SIGNAL_TERMINATE),
        ),
        ("Delete", soap::delete_shell(&ep, &id, "S")),
    ];
    // Parts of recorded requests we deliberately leave out: the session id (optional), the
    // split of the command line into Arguments, and optional shell settings.
    let optional = [
        "SessionId",
        "}Arguments",
        "shell}Name",
        "WorkingDirectory",
        "IdleTimeOut",
        "Lifetime",
        "Environment",
        "Variable",
        "@MustComply",
    ];
    let mut checked = 0;
    for (file, req, _) in recorded_pairs() {
        let parsed = winrm_server::parse_request(&req);
        let action = parsed
            .action
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let Some((_, mine)) = ours.iter().find(|(a, _)| *a == action) else {
            continue;
        };
        let recorded = shape(&req);
        let mine_shape = shape(mine);
        for element in &recorded {
            if optional.iter().any(|o| element.contains(o)) {
                continue;
            }
            assert!(
                mine_shape.contains(element),
                "{file} {action}: we do not send {element}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 50, "{checked}");
    // And the server side of our own parser understands ours.
    let create = winrm_server::parse_request(&ours[0].1);
    assert_eq!(
        create.options.get("WINRS_CODEPAGE").map(String::as_str),
        Some("65001")
    );
    assert_eq!(
        create.options.get("WINRS_NOPROFILE").map(String::as_str),
        Some("TRUE")
    );
    let command = winrm_server::parse_request(&ours[1].1);
    assert_eq!(command.shell_id.as_deref(), Some("uuid:S"));
    assert_eq!(command.command.as_deref(), Some("echo hi"));
}
