//! A host key that is unknown, changed or of another type than the recorded one is refused until
//! trusted.

use super::*;

/// One ssh target `a` whose step `one` appends to `ledger`.
fn one_step_scene(name: &str, ip: &str) -> Scene {
    Scene::new(name)
        .ssh("a", ip)
        .var("a", "ledger", "{dir}/ledger")
        .step(step("one", "a", "echo one >> {{ ledger }}"))
}

#[test]
fn an_unknown_host_key_is_refused_until_trusted() {
    let scene = one_step_scene("host keys", "127.0.0.57");
    let known_hosts = scene.path("known_hosts");
    fs::write(&known_hosts, b"").expect("write an empty known_hosts");
    let scene = scene.known_hosts("a", &known_hosts);
    let fingerprint = openssh_fingerprint(&scene.sshd("a").host_pub_path());

    scene
        .apply()
        .expect_exit(1)
        // The message shows the fingerprint and the way out.
        .expect_stderr_contains(&fingerprint)
        .expect_stderr_contains("runner trust")
        // The attempt failed before anything ran.
        .expect_journal("one", &[("a", "run", "failed")])
        .run();
    assert!(
        scene.lines("ledger").is_empty(),
        "nothing ran on an untrusted host"
    );
    assert!(
        fs::read_to_string(&known_hosts).unwrap().is_empty(),
        "apply never writes known_hosts"
    );

    scene
        .run(["trust", "cutover.yaml", "a", "--yes"])
        .expect_exit(0)
        .expect_stdout_contains(&fingerprint)
        .run();
    let (_, b64) = scene.sshd("a").host_key();
    assert!(fs::read_to_string(&known_hosts).unwrap().contains(&b64));

    scene
        .apply()
        .expect_exit(0)
        .expect_journal("one", &[("a", "run", "failed"), ("a", "run", "succeeded")])
        .run();
    assert_eq!(scene.lines("ledger"), ["one"]);
}

#[test]
fn a_changed_host_key_is_refused() {
    changed_host_key_is_refused("127.0.0.58", "ed25519");
}

/// Only a key of another type is recorded for the host: the server cannot prove it holds that
/// key, so this counts as a changed key too.
#[test]
fn a_host_key_of_another_type_than_the_recorded_one_is_refused() {
    changed_host_key_is_refused("127.0.0.64", "ecdsa");
}

fn changed_host_key_is_refused(ip: &str, recorded_type: &str) {
    let scene = one_step_scene("changed host key", ip);
    let other = scene.path("other_host_key");
    keygen_typed(&other, recorded_type, "");
    let other_pub = fs::read_to_string(other.with_extension("pub")).expect("read the other key");
    let mut fields = other_pub.split_whitespace();
    let (key_type, b64) = (fields.next().unwrap(), fields.next().unwrap());
    let known_hosts = scene.path("known_hosts");
    let sshd = scene.sshd("a");
    let recorded = format!("[{}]:{} {key_type} {b64}\n", sshd.host(), sshd.port());
    fs::write(&known_hosts, &recorded).expect("write known_hosts");
    // The server is asked for a key of the recorded type, so that is the one it presents.
    let presented = if recorded_type == "ecdsa" {
        sshd.ecdsa_host_pub_path()
    } else {
        sshd.host_pub_path()
    };
    let presented = openssh_fingerprint(&presented);
    let scene = scene.known_hosts("a", &known_hosts);

    let r = scene
        .apply()
        .expect_exit(1)
        .expect_stderr_contains(&presented)
        .expect_journal("one", &[("a", "run", "failed")])
        .run();
    assert!(scene.lines("ledger").is_empty(), "nothing ran");
    assert!(
        r.stderr.to_lowercase().contains("has changed"),
        "the message says the key changed:\n{}",
        r.show()
    );

    if recorded_type != "ed25519" {
        return;
    }
    // `trust` does not replace a recorded key either.
    scene
        .run(["trust", "cutover.yaml", "a", "--yes"])
        .expect_exit(1)
        .run();
    assert_eq!(fs::read_to_string(&known_hosts).unwrap(), recorded);
    scene
        .apply()
        .expect_exit(1)
        .expect_journal("one", &[("a", "run", "failed"), ("a", "run", "failed")])
        .run();
    assert!(scene.lines("ledger").is_empty());
}
