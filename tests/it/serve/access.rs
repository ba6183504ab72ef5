//! Who may read the page: a token file makes the token required even on loopback, without one only
//! local host names are answered, a non-loopback address gets a generated token printed once, and
//! bad arguments are invalid input.

use super::*;

#[test]
fn a_token_file_makes_the_token_required_even_on_loopback() {
    let dir = workdir();
    local_cutover(dir.path());
    let token = "s3cr3t-token-0123456789";
    fs::write(dir.path().join("token"), format!("{token}\n")).expect("write the token");
    let serve = Serve::start(
        &[
            "cutover.yaml",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            "token",
        ],
        dir.path(),
    );
    for path in ["/", "/api/status", "/events", "/report/1", "/api/status/1"] {
        assert_eq!(serve.get(path, &[]).status, 401, "{path} without a token");
    }
    let wrong = "s3cr3t-token-0123456780";
    let bad = serve.get(
        "/api/status",
        &[("Authorization", &format!("Bearer {wrong}"))],
    );
    assert_eq!(bad.status, 401);
    assert_eq!(serve.get(&format!("/?token={wrong}"), &[]).status, 401);
    let cookie_bad = serve.get("/", &[("Cookie", &format!("runner_token={wrong}"))]);
    assert_eq!(cookie_bad.status, 401);

    let ok = serve.get(
        "/api/status",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);

    // A link with ?token= sets an HttpOnly cookie and sends the browser to the bare page.
    let link = serve.get(&format!("/?token={token}"), &[]);
    assert_eq!(link.status, 303);
    assert_eq!(link.headers.get("location").map(String::as_str), Some("/"));
    let cookie = link.headers.get("set-cookie").expect("a cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let pair = cookie.split(';').next().expect("name=value");
    let page = serve.get("/", &[("Cookie", pair)]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("EventSource"));
}

#[test]
fn without_a_token_only_local_host_names_are_answered() {
    let dir = workdir();
    local_cutover(dir.path());
    let serve = Serve::start(&["cutover.yaml", "--listen", "127.0.0.1:0"], dir.path());
    // A web page elsewhere whose name now points at 127.0.0.1 (DNS rebinding) gets nothing.
    let rebound = serve.get("/api/status", &[("Host", "attacker.example")]);
    assert_eq!(rebound.status, 403, "{}", rebound.body);
    let port = serve.port();
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let r = serve.get("/api/status", &[("Host", &host)]);
        assert_eq!(r.status, 200, "{host}: {}", r.body);
    }
}

#[test]
fn a_non_loopback_address_gets_a_generated_token_printed_once() {
    let dir = workdir();
    local_cutover(dir.path());
    let serve = Serve::start(&["cutover.yaml", "--listen", "0.0.0.0:0"], dir.path());
    let token = serve
        .preamble
        .iter()
        .find_map(|l| l.strip_prefix("access token (shown once): "))
        .expect("the generated token is printed")
        .to_owned();
    assert_eq!(token.len(), 32, "{token}");
    let addr = format!("127.0.0.1:{}", serve.port());
    assert_eq!(http_get(&addr, "/api/status", &[]).status, 401);
    let ok = http_get(
        &addr,
        "/api/status",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[test]
fn bad_serve_arguments_are_invalid_input() {
    let dir = workdir();
    local_cutover(dir.path());
    let r = runner(
        &["serve", "cutover.yaml", "--listen", "not an address"],
        dir.path(),
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--listen"), "{}", r.stderr);
    let r = runner(
        &["serve", "cutover.yaml", "--token-file", "missing"],
        dir.path(),
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--token-file"), "{}", r.stderr);
    fs::write(dir.path().join("empty"), "\n").expect("write");
    let r = runner(
        &["serve", "cutover.yaml", "--token-file", "empty"],
        dir.path(),
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = runner(&["serve", "missing.yaml"], dir.path(), &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}
