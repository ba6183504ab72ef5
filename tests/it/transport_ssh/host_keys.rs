//! Host keys: an unknown or changed key is refused with its fingerprint, hashed known_hosts entries
//! work, scan-and-trust lets a connection through, and a recorded key of another type is
//! negotiated, not reported as changed.

use super::*;

#[test]
fn unknown_host_key_is_refused_with_its_fingerprint() {
    let sshd = Sshd::start("127.0.0.5");
    let empty = sshd.dir().join("empty_known_hosts");
    fs::write(&empty, "").expect("write");
    let mut cfg = ssh_config(&sshd);
    cfg.known_hosts = empty.clone();
    let mut t = SshTransport::new(cfg.clone());
    let err = t.connect().expect_err("must refuse an unknown key");
    let fingerprint = openssh_fingerprint(&sshd.host_pub_path());
    match &err {
        TransportError::HostKeyUnknown {
            fingerprint: f,
            port,
            ..
        } => {
            assert_eq!(f, &fingerprint);
            assert_eq!(*port, sshd.port());
        }
        other => panic!("expected HostKeyUnknown, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&fingerprint), "{msg}");
    assert!(msg.contains("runner trust"), "{msg}");
    assert!(!err.is_connection_lost());

    // A missing file is no different from an empty one.
    cfg.known_hosts = sshd.dir().join("does-not-exist");
    let err = SshTransport::new(cfg).connect().expect_err("must refuse");
    assert!(
        matches!(err, TransportError::HostKeyUnknown { .. }),
        "{err:?}"
    );
}

#[test]
fn changed_host_key_is_refused() {
    let sshd = Sshd::start("127.0.0.6");
    // Another ed25519 key recorded for the same [host]:port.
    let other = sshd.dir().join("other_key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let other_pub = fs::read_to_string(other.with_extension("pub")).expect("read");
    let mut fields = other_pub.split_whitespace();
    let (kt, b64) = (fields.next().expect("type"), fields.next().expect("key"));
    let kh = sshd.dir().join("changed_known_hosts");
    fs::write(
        &kh,
        format!("[{}]:{} {kt} {b64}\n", sshd.host(), sshd.port()),
    )
    .expect("write");

    let mut cfg = ssh_config(&sshd);
    cfg.known_hosts = kh.clone();
    let err = SshTransport::new(cfg.clone())
        .connect()
        .expect_err("must refuse a changed key");
    assert!(
        matches!(err, TransportError::HostKeyChanged { .. }),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .contains(&openssh_fingerprint(&sshd.host_pub_path())));

    // Trusting cannot paper over a changed key either.
    let key = scan_host_key(sshd.host(), sshd.port(), Duration::from_secs(10)).expect("scan");
    assert!(matches!(
        trust(&kh, sshd.host(), sshd.port(), &key),
        Err(TransportError::HostKeyChanged { .. })
    ));
    let err = SshTransport::new(cfg).connect().expect_err("still refused");
    assert!(
        matches!(err, TransportError::HostKeyChanged { .. }),
        "{err:?}"
    );
}

#[test]
fn hashed_known_hosts_entries_work() {
    let sshd = Sshd::start("127.0.0.7");
    let kh = sshd.dir().join("hashed_known_hosts");
    fs::copy(sshd.known_hosts_path(), &kh).expect("copy");
    let status = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .expect("ssh-keygen -H");
    assert!(status.status.success());
    let text = fs::read_to_string(&kh).expect("read");
    assert!(text.starts_with("|1|"), "not hashed: {text}");
    assert!(!text.contains(sshd.host()));

    let mut cfg = ssh_config(&sshd);
    cfg.known_hosts = kh;
    let mut t = SshTransport::new(cfg);
    let out = run_sh(&mut t, "echo ok", None).expect("exec");
    assert_eq!(out.stdout, "ok\n");
}

#[test]
fn scan_and_trust_then_connect() {
    let sshd = Sshd::start("127.0.0.8");
    let key = scan_host_key(sshd.host(), sshd.port(), Duration::from_secs(10)).expect("scan");
    let (kt, b64) = sshd.host_key();
    assert_eq!(key.key_type(), kt);
    assert_eq!(key.base64(), b64);
    assert_eq!(
        key.fingerprint_sha256(),
        openssh_fingerprint(&sshd.host_pub_path())
    );
    assert_eq!(HostKey::from_openssh(&kt, &b64).as_ref(), Some(&key));

    let kh = sshd.dir().join("trusted_known_hosts");
    let mut cfg = ssh_config(&sshd);
    cfg.known_hosts = kh.clone();
    let err = SshTransport::new(cfg.clone())
        .connect()
        .expect_err("not trusted yet");
    assert!(
        matches!(err, TransportError::HostKeyUnknown { .. }),
        "{err:?}"
    );

    assert_eq!(
        trust(&kh, sshd.host(), sshd.port(), &key).expect("trust"),
        TrustOutcome::Added
    );
    assert_eq!(
        trust(&kh, sshd.host(), sshd.port(), &key).expect("trust again"),
        TrustOutcome::AlreadyTrusted
    );
    // The line is one OpenSSH itself accepts.
    let out = Command::new("ssh-keygen")
        .arg("-F")
        .arg(format!("[{}]:{}", sshd.host(), sshd.port()))
        .arg("-f")
        .arg(&kh)
        .output()
        .expect("ssh-keygen -F");
    assert!(out.status.success(), "ssh-keygen -F did not find the entry");

    let mut t = SshTransport::new(cfg);
    assert_eq!(
        run_sh(&mut t, "echo trusted", None).expect("exec").stdout,
        "trusted\n"
    );
}

#[test]
fn a_recorded_key_of_another_type_is_negotiated_not_reported_as_changed() {
    let sshd = Sshd::start("127.0.0.16");
    // Only the server's ECDSA key is on record; the runner prefers ed25519, so it must connect
    // again asking for ECDSA instead of calling the ed25519 key "unknown" or "changed".
    let (kt, b64) = sshd.ecdsa_host_key();
    let kh = sshd.dir().join("ecdsa_known_hosts");
    fs::write(
        &kh,
        format!("[{}]:{} {kt} {b64}\n", sshd.host(), sshd.port()),
    )
    .expect("write");
    let mut cfg = ssh_config(&sshd);
    cfg.known_hosts = kh;
    let mut t = SshTransport::new(cfg.clone());
    assert_eq!(
        run_sh(&mut t, "echo ecdsa", None).expect("exec").stdout,
        "ecdsa\n"
    );

    // A different ECDSA key on record is a changed key, even though ed25519 is offered too.
    let other = sshd.dir().join("other_ecdsa");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-N", "", "-f"])
        .arg(&other)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let (kt, b64) = common::sshd::read_pub(&other.with_extension("pub"));
    let kh = sshd.dir().join("wrong_ecdsa_known_hosts");
    fs::write(
        &kh,
        format!("[{}]:{} {kt} {b64}\n", sshd.host(), sshd.port()),
    )
    .expect("write");
    cfg.known_hosts = kh;
    let err = SshTransport::new(cfg).connect().expect_err("changed");
    assert!(
        matches!(err, TransportError::HostKeyChanged { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&openssh_fingerprint(&sshd.ecdsa_host_pub_path())),
        "{err}"
    );
}
