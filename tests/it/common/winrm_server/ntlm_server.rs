//! The server side of NTLMv2, written from MS-NLMP independently of the client code (only
//! the sealing state, checked against the specification's vectors, is shared).

use hmac::{Hmac, Mac};
use md4::{Digest as _, Md4};
use rc4::{KeyInit, Rc4, StreamCipher};
use runner::transport::winrm::ntlm::Session;

pub struct Pending {
    negotiate: Vec<u8>,
    challenge: Vec<u8>,
    server_challenge: [u8; 8],
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = <Hmac<md5::Md5> as Mac>::new_from_slice(key).expect("any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn from_utf16(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// A CHALLENGE_MESSAGE like Windows sends: NetBIOS names and a timestamp.
pub fn challenge(negotiate: &[u8]) -> (Vec<u8>, Pending) {
    let n = super::NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let server_challenge =
        (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x0123_4567_89ab_cdef).to_le_bytes();
    let mut info = Vec::new();
    for (id, value) in [
        (2u16, utf16("TEST")),
        (1, utf16("WIN")),
        (7, 133_000_000_000_000_000u64.to_le_bytes().to_vec()),
    ] {
        info.extend_from_slice(&id.to_le_bytes());
        info.extend_from_slice(&(value.len() as u16).to_le_bytes());
        info.extend_from_slice(&value);
    }
    info.extend_from_slice(&[0; 4]);
    let flags: u32 = 0xE28A_8235;
    let mut m = Vec::new();
    m.extend_from_slice(b"NTLMSSP\0");
    m.extend_from_slice(&2u32.to_le_bytes());
    m.extend_from_slice(&[0, 0, 0, 0, 56, 0, 0, 0]);
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&server_challenge);
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&56u32.to_le_bytes());
    m.extend_from_slice(&[10, 0, 0x61, 0x4a, 0, 0, 0, 15]);
    m.extend_from_slice(&info);
    let pending = Pending {
        negotiate: negotiate.to_vec(),
        challenge: m.clone(),
        server_challenge,
    };
    (m, pending)
}

fn field(m: &[u8], at: usize) -> Option<&[u8]> {
    let len = u16::from_le_bytes([*m.get(at)?, *m.get(at + 1)?]) as usize;
    let off = u32::from_le_bytes(m.get(at + 4..at + 8)?.try_into().ok()?) as usize;
    m.get(off..off + len)
}

/// Checks an AUTHENTICATE_MESSAGE against the password; the session on success.
pub fn verify(p: &Pending, auth: &[u8], user: &str, password: &str) -> Option<Session> {
    let nt = field(auth, 20)?;
    let domain = from_utf16(field(auth, 28)?);
    let name = from_utf16(field(auth, 36)?);
    let enc_key = field(auth, 52)?;
    // The login may be `DOMAIN\user`: compare what was sent with it.
    let sent = if domain.is_empty() {
        name.clone()
    } else {
        format!("{domain}\\{name}")
    };
    if sent != user || nt.len() < 48 || enc_key.len() != 16 {
        return None;
    }
    let mut md4 = Md4::new();
    md4.update(utf16(password));
    let nt_hash: [u8; 16] = md4.finalize().into();
    let key = hmac_md5(
        &nt_hash,
        &[&utf16(&format!("{}{domain}", name.to_uppercase()))],
    );
    let (proof, temp) = nt.split_at(16);
    if hmac_md5(&key, &[&p.server_challenge, temp]) != proof {
        return None;
    }
    let base = hmac_md5(&key, &[proof]);
    let mut exported = [0u8; 16];
    exported.copy_from_slice(enc_key);
    Rc4::<rc4::consts::U16>::new((&base).into()).apply_keystream(&mut exported);
    let mut zeroed = auth.to_vec();
    zeroed.get_mut(72..88)?.fill(0);
    let mic = hmac_md5(&exported, &[&p.negotiate, &p.challenge, &zeroed]);
    if auth.get(72..88)? != mic {
        return None;
    }
    Some(Session::server(&exported))
}

pub fn unseal(sess: &mut Session, body: &[u8]) -> Option<Vec<u8>> {
    let marker = b"application/octet-stream\r\n";
    let at = body.windows(marker.len()).position(|w| w == marker)? + marker.len();
    let head = String::from_utf8_lossy(&body[..at]).into_owned();
    let len: usize = head
        .split("Length=")
        .nth(1)?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    let part = &body[at..];
    if part.get(..4)? != 16u32.to_le_bytes() {
        return None;
    }
    let sig = part.get(4..20)?.to_vec();
    let mut data = part.get(20..20 + len)?.to_vec();
    sess.unwrap(&sig, &mut data).ok()?;
    Some(data)
}

/// Frames a sealed reply the way Windows 2008 R2 does (note the space after `--`).
pub fn seal(sess: &mut Session, reply: &[u8]) -> Vec<u8> {
    let mut data = reply.to_vec();
    let sig = sess.wrap(&mut data);
    let mut out = format!(
        "-- Encrypted Boundary\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={}\r\n-- Encrypted Boundary\r\n\tContent-Type: application/octet-stream\r\n",
        reply.len()
    )
    .into_bytes();
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&sig);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"-- Encrypted Boundary--\r\n");
    out
}
