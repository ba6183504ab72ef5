//! The HTTP side: connections kept alive until the client closes them (plain, or TLS with a
//! generated certificate), Basic or NTLM authentication with sealed bodies, and the 401 and 500
//! answers Windows gives.

use super::*;

pub(super) fn tls_acceptor(ip: &str) -> (openssl::ssl::SslAcceptor, String, Vec<u8>) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::ssl::{SslAcceptor, SslMethod};
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509NameBuilder, X509};

    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("ec key")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", ip).expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("x509");
    b.set_version(2).expect("version");
    let mut serial = BigNum::new().expect("bn");
    serial.rand(64, MsbOption::MAYBE_ZERO, false).expect("rand");
    b.set_serial_number(&serial.to_asn1_integer().expect("serial"))
        .expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("t"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(2).expect("t"))
        .expect("na");
    let san = SubjectAlternativeName::new()
        .ip(ip)
        .build(&b.x509v3_context(None, None))
        .expect("san");
    b.append_extension(san).expect("ext");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    let cert = b.build();
    let fp = cert
        .digest(MessageDigest::sha256())
        .expect("digest")
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let pem = cert.to_pem().expect("pem");
    let mut a = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
    a.set_private_key(&key).expect("key");
    a.set_certificate(&cert).expect("cert");
    (a.build(), fp, pem)
}

/// One HTTP/1.1 connection, kept alive until the client closes it.
pub(super) fn serve<S: Read + Write>(
    mut s: S,
    state: &Arc<(Mutex<State>, Condvar)>,
    opts: &Options,
    addr: SocketAddr,
) {
    let mut buf: Vec<u8> = Vec::new();
    // NTLM binds to this connection: the handshake in progress, then the sealing state.
    let mut handshake: Option<ntlm_server::Pending> = None;
    let mut sealed: Option<Session> = None;
    loop {
        let Some((headers, body)) = read_request(&mut s, &mut buf) else {
            return;
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let auth = header("authorization");
        let content_type = header("content-type");
        let mut extra: Vec<String> = Vec::new();

        // The NTLM handshake: empty POSTs with `Authorization: Negotiate <token>`.
        if opts.ntlm && auth.starts_with("Negotiate ") {
            let token = base64::engine::general_purpose::STANDARD
                .decode(auth["Negotiate ".len()..].trim())
                .unwrap_or_default();
            let (status, hdr) = match token.get(8) {
                Some(1) => {
                    let (challenge, pending) = ntlm_server::challenge(&token);
                    handshake = Some(pending);
                    sealed = None;
                    (
                        401,
                        Some(format!(
                            "WWW-Authenticate: Negotiate {}",
                            base64::engine::general_purpose::STANDARD.encode(challenge)
                        )),
                    )
                }
                Some(3) => match handshake
                    .take()
                    .and_then(|p| ntlm_server::verify(&p, &token, &opts.user, &opts.password))
                {
                    Some(session) => {
                        sealed = Some(session);
                        (200, None)
                    }
                    None => (401, Some("WWW-Authenticate: Negotiate".to_string())),
                },
                _ => (401, Some("WWW-Authenticate: Negotiate".to_string())),
            };
            extra.extend(hdr);
            if !write_response(&mut s, status, &extra, None, b"") {
                return;
            }
            continue;
        }

        // The body, unsealed if it came sealed.
        let mut soap = body.clone();
        let mut encrypted = false;
        if content_type.starts_with("multipart/encrypted") {
            match sealed
                .as_mut()
                .and_then(|sess| ntlm_server::unseal(sess, &body))
            {
                Some(plain) => {
                    soap = plain;
                    encrypted = true;
                }
                None => {
                    let mut offers = vec!["WWW-Authenticate: Negotiate".to_string()];
                    if !opts.ntlm {
                        offers.push("WWW-Authenticate: Basic realm=\"WSMAN\"".into());
                    }
                    if !write_response(&mut s, 401, &offers, None, b"") {
                        return;
                    }
                    continue;
                }
            }
        }
        let authorized = if opts.ntlm {
            encrypted || (sealed.is_some() && opts.https)
        } else {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", opts.user, opts.password))
            );
            auth == expected
        };
        let body_text = String::from_utf8_lossy(&soap).into_owned();
        let req = parse_request(&body_text);
        {
            let mut g = state.0.lock().unwrap_or_else(|e| e.into_inner());
            g.log.push(Logged {
                action: req
                    .action
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                body: body_text.clone(),
                authorized,
            });
            if encrypted {
                g.sealed_requests += 1;
            }
            if g.unreachable {
                return;
            }
        }
        let (status, reply) = if opts.ntlm && sealed.is_some() && !encrypted && !opts.https {
            // NTLM-authenticated but unsealed over HTTP: AllowUnencrypted=false.
            (500, String::new())
        } else if !authorized {
            extra.push("WWW-Authenticate: Negotiate".into());
            if !opts.ntlm {
                extra.push("WWW-Authenticate: Basic realm=\"WSMAN\"".into());
            }
            (401, String::new())
        } else if opts.require_encryption {
            (500, String::new())
        } else {
            handle(&req, state, addr)
        };
        let ok = match (encrypted, sealed.as_mut()) {
            (true, Some(sess)) if !reply.is_empty() => {
                let framed = ntlm_server::seal(sess, reply.as_bytes());
                write_response(
                    &mut s,
                    status,
                    &extra,
                    Some("multipart/encrypted;protocol=\"application/HTTP-SPNEGO-session-encrypted\";boundary=\"Encrypted Boundary\""),
                    &framed,
                )
            }
            _ => write_response(
                &mut s,
                status,
                &extra,
                (!reply.is_empty()).then_some("application/soap+xml;charset=UTF-8"),
                reply.as_bytes(),
            ),
        };
        if !ok {
            return;
        }
        if opts.close_after_delete && req.action.ends_with("/Delete") {
            let _ = read_request(&mut s, &mut buf);
            return;
        }
    }
}

fn write_response<S: Write>(
    s: &mut S,
    status: u16,
    extra: &[String],
    content_type: Option<&str>,
    body: &[u8],
) -> bool {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Internal Server Error",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: Microsoft-HTTPAPI/2.0\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in extra {
        head.push_str(h);
        head.push_str("\r\n");
    }
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    // One write: a head and body in separate segments meet delayed ACKs.
    let mut message = head.into_bytes();
    message.extend_from_slice(body);
    s.write_all(&message).is_ok() && s.flush().is_ok()
}

type Headers = Vec<(String, String)>;

fn read_request<S: Read>(s: &mut S, buf: &mut Vec<u8>) -> Option<(Headers, Vec<u8>)> {
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut headers = Vec::new();
    for line in head.split("\r\n").skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let start = head_end + 4;
    while buf.len() < start + len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[start..start + len].to_vec();
    buf.drain(..start + len);
    Some((headers, body))
}
