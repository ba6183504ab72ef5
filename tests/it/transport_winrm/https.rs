//! HTTPS trusts a pinned certificate, refuses another pin showing the real fingerprint, does not
//! trust a self-signed one by system roots, and takes a CA file or `insecure`.

use super::*;

fn start_tls(ip: &str) -> WinrmServer {
    WinrmServer::start(
        ip,
        Options {
            user: USER.into(),
            password: PASSWORD.into(),
            https: true,
            ..Options::default()
        },
    )
}

#[test]
fn https_with_a_pinned_certificate() {
    let srv = start_tls("127.0.0.41");
    let fp = srv.cert_sha256.clone().unwrap();
    let pin = parse_cert_sha256(&fp).unwrap();
    let mut t = transport_with(&srv, PASSWORD, Some(TlsTrust::Pinned(pin)));
    assert_eq!(
        t.describe(),
        format!("winrm+https admin@127.0.0.41:{}", srv.port())
    );
    assert_eq!(cmd(&mut t, "echo tls").unwrap().stdout, "tls\r\n");
}

#[test]
fn https_with_a_different_pin_is_refused_and_shows_the_real_fingerprint() {
    let srv = start_tls("127.0.0.42");
    let mut t = transport_with(&srv, PASSWORD, Some(TlsTrust::Pinned([7u8; 32])));
    let text = error_text(&cmd(&mut t, "echo tls").unwrap_err());
    assert!(text.contains("not the pinned one"), "{text}");
    assert!(text.contains(srv.cert_sha256.as_deref().unwrap()), "{text}");
    assert!(
        srv.requests().is_empty(),
        "nothing may be sent before trust"
    );
}

#[test]
fn https_self_signed_is_not_trusted_by_system_roots() {
    let srv = start_tls("127.0.0.43");
    let mut t = transport_with(&srv, PASSWORD, Some(TlsTrust::System));
    let text = error_text(&t.connect().unwrap_err());
    assert!(text.contains("not trusted"), "{text}");
    assert!(text.contains(srv.cert_sha256.as_deref().unwrap()), "{text}");
    assert!(srv.requests().is_empty());
}

#[test]
fn https_with_a_ca_file_and_insecure() {
    let srv = start_tls("127.0.0.44");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, srv.cert_pem.as_ref().unwrap()).unwrap();
    let mut t = transport_with(&srv, PASSWORD, Some(TlsTrust::CaFile(ca)));
    assert_eq!(cmd(&mut t, "echo ca").unwrap().stdout, "ca\r\n");
    let mut t = transport_with(&srv, PASSWORD, Some(TlsTrust::Insecure));
    assert_eq!(cmd(&mut t, "echo any").unwrap().stdout, "any\r\n");
    // A CA file that does not hold the server's certificate.
    let other = start_tls("127.0.0.45");
    let wrong = dir.path().join("other.pem");
    std::fs::write(&wrong, other.cert_pem.as_ref().unwrap()).unwrap();
    let mut t = transport_with(&srv, PASSWORD, Some(TlsTrust::CaFile(wrong)));
    assert!(error_text(&t.connect().unwrap_err()).contains("not trusted"));
}
