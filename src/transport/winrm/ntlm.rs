//! NTLMv2 client authentication and message sealing (MS-NLMP), as WinRM over plain HTTP
//! needs it: the three-message handshake binds a TCP connection, and afterwards every body is
//! sealed (RC4) and signed (HMAC-MD5) with keys derived from the session key.
//!
//! Written against the MS-NLMP specification and checked with its section 4.2.4 test vectors
//! (see the tests below). Only NTLMv2 with extended session security, 128-bit keys and key
//! exchange is offered: anything weaker is refused rather than negotiated down.

use hmac::{Hmac, Mac};
use md4::Md4;
use md5::{Digest, Md5};
use rc4::{KeyInit, Rc4, StreamCipher};

use crate::transport::Secret;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

pub const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
pub const REQUEST_TARGET: u32 = 0x0000_0004;
pub const NEGOTIATE_SIGN: u32 = 0x0000_0010;
pub const NEGOTIATE_SEAL: u32 = 0x0000_0020;
pub const NEGOTIATE_NTLM: u32 = 0x0000_0200;
pub const NEGOTIATE_ALWAYS_SIGN: u32 = 0x0000_8000;
pub const NEGOTIATE_EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
pub const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
pub const NEGOTIATE_VERSION: u32 = 0x0200_0000;
pub const NEGOTIATE_128: u32 = 0x2000_0000;
pub const NEGOTIATE_KEY_EXCH: u32 = 0x4000_0000;
pub const NEGOTIATE_56: u32 = 0x8000_0000;

/// What we ask for. Sealing needs SIGN + SEAL; the rest makes the keys strong.
pub const CLIENT_FLAGS: u32 = NEGOTIATE_UNICODE
    | REQUEST_TARGET
    | NEGOTIATE_SIGN
    | NEGOTIATE_SEAL
    | NEGOTIATE_NTLM
    | NEGOTIATE_ALWAYS_SIGN
    | NEGOTIATE_EXTENDED_SESSIONSECURITY
    | NEGOTIATE_VERSION
    | NEGOTIATE_128
    | NEGOTIATE_KEY_EXCH
    | NEGOTIATE_56;

/// Flags the server must grant, or the session would not be sealed with strong keys.
const REQUIRED: u32 = NEGOTIATE_UNICODE
    | NEGOTIATE_SIGN
    | NEGOTIATE_SEAL
    | NEGOTIATE_EXTENDED_SESSIONSECURITY
    | NEGOTIATE_128
    | NEGOTIATE_KEY_EXCH;

/// Windows 10 (10.0), NTLM revision 15: what we claim in the VERSION field.
const VERSION: [u8; 8] = [10, 0, 0, 0, 0, 0, 0, 0x0f];

const AV_EOL: u16 = 0;
const AV_FLAGS: u16 = 6;
const AV_TIMESTAMP: u16 = 7;
/// MsvAvFlags bit: the AUTHENTICATE_MESSAGE carries a MIC.
const AV_FLAG_MIC: u32 = 0x2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NtlmError {
    #[error("the server's NTLM challenge is malformed: {0}")]
    BadChallenge(&'static str),
    #[error("the server refuses NTLM message encryption (it did not grant {0}); it cannot be used over plain HTTP")]
    WeakServer(&'static str),
    #[error("a sealed message from the server is malformed: {0}")]
    BadMessage(&'static str),
    #[error("a sealed message from the server failed its integrity check (tampered with, or out of order)")]
    BadSignature,
}

type HmacMd5 = Hmac<Md5>;

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = match <HmacMd5 as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 16],
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// NTOWFv1: MD4 of the UTF-16LE password (the "NT hash").
pub fn nt_hash(password: &str) -> [u8; 16] {
    let mut h = Md4::new();
    h.update(utf16le(password));
    h.finalize().into()
}

/// NTOWFv2 (MS-NLMP 3.3.2): the user name upper-cased, the domain as written.
pub fn ntowf_v2(password: &str, user: &str, domain: &str) -> [u8; 16] {
    let id = utf16le(&format!("{}{domain}", user.to_uppercase()));
    hmac_md5(&nt_hash(password), &[&id])
}

/// `DOMAIN\user` splits; `user@domain.tld` and a bare name are sent as the user name alone
/// (Windows resolves UPNs itself).
pub fn split_user(login: &str) -> (String, String) {
    match login.split_once('\\') {
        Some((domain, user)) => (domain.to_string(), user.to_string()),
        None => (String::new(), login.to_string()),
    }
}

/// The NTLMv2 response computation of MS-NLMP 3.3.2, as a pure function for the test vectors.
pub struct V2Response {
    pub nt_response: Vec<u8>,
    pub lm_response: Vec<u8>,
    pub session_base_key: [u8; 16],
}

pub fn ntlmv2_response(
    response_key: &[u8; 16],
    server_challenge: &[u8; 8],
    client_challenge: &[u8; 8],
    timestamp: &[u8; 8],
    target_info: &[u8],
) -> V2Response {
    let mut temp = vec![1u8, 1, 0, 0, 0, 0, 0, 0];
    temp.extend_from_slice(timestamp);
    temp.extend_from_slice(client_challenge);
    temp.extend_from_slice(&[0; 4]);
    temp.extend_from_slice(target_info);
    temp.extend_from_slice(&[0; 4]);
    let proof = hmac_md5(response_key, &[server_challenge, &temp]);
    let mut nt_response = proof.to_vec();
    nt_response.extend_from_slice(&temp);
    let mut lm_response = hmac_md5(response_key, &[server_challenge, client_challenge]).to_vec();
    lm_response.extend_from_slice(client_challenge);
    V2Response {
        nt_response,
        lm_response,
        session_base_key: hmac_md5(response_key, &[&proof]),
    }
}

fn rc4_once(key: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    Rc4::<rc4::consts::U16>::new(key.into()).apply_keystream(&mut out);
    out
}

/// The NEGOTIATE_MESSAGE: flags and version, no domain or workstation.
pub fn negotiate_message() -> Vec<u8> {
    let mut m = Vec::with_capacity(40);
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&CLIENT_FLAGS.to_le_bytes());
    m.extend_from_slice(&[0; 8]); // DomainNameFields
    m.extend_from_slice(&[0; 8]); // WorkstationFields
    m.extend_from_slice(&VERSION);
    m
}

/// What we need from a CHALLENGE_MESSAGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub flags: u32,
    pub server_challenge: [u8; 8],
    pub target_info: Vec<u8>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub fn parse_challenge(msg: &[u8]) -> Result<Challenge, NtlmError> {
    if msg.get(..8) != Some(&SIGNATURE[..]) || u32_at(msg, 8) != Some(2) {
        return Err(NtlmError::BadChallenge("not an NTLM CHALLENGE_MESSAGE"));
    }
    let flags = u32_at(msg, 20).ok_or(NtlmError::BadChallenge("too short"))?;
    let server_challenge: [u8; 8] = msg
        .get(24..32)
        .and_then(|s| s.try_into().ok())
        .ok_or(NtlmError::BadChallenge("too short"))?;
    let len = u16_at(msg, 40).unwrap_or(0) as usize;
    let off = u32_at(msg, 44).unwrap_or(0) as usize;
    let target_info = if len == 0 {
        Vec::new()
    } else {
        msg.get(off..off.saturating_add(len))
            .ok_or(NtlmError::BadChallenge("target info outside the message"))?
            .to_vec()
    };
    Ok(Challenge {
        flags,
        server_challenge,
        target_info,
    })
}

/// The AV pairs of a target info block, (id, value), up to MsvAvEOL.
pub fn av_pairs(info: &[u8]) -> Result<Vec<(u16, Vec<u8>)>, NtlmError> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let (Some(id), Some(len)) = (u16_at(info, at), u16_at(info, at + 2)) else {
            return Err(NtlmError::BadChallenge("target info is truncated"));
        };
        if id == AV_EOL {
            return Ok(out);
        }
        let value = info
            .get(at + 4..at + 4 + len as usize)
            .ok_or(NtlmError::BadChallenge("target info is truncated"))?;
        out.push((id, value.to_vec()));
        at += 4 + len as usize;
    }
}

fn encode_av_pairs(pairs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, value) in pairs {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&[0; 4]);
    out
}

/// Now as a Windows FILETIME (100 ns since 1601), for servers that send no timestamp.
fn filetime_now() -> [u8; 8] {
    let since_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() / 100)
        .unwrap_or(0);
    let ft = since_unix as u64 + 116_444_736_000_000_000;
    ft.to_le_bytes()
}

/// Builds the AUTHENTICATE_MESSAGE for `challenge` and the sealing session it establishes.
/// `client_challenge` and `exported_session_key` must be fresh random bytes.
pub fn authenticate(
    login: &str,
    password: &Secret,
    negotiate: &[u8],
    challenge_msg: &[u8],
    client_challenge: [u8; 8],
    exported_session_key: [u8; 16],
) -> Result<(Vec<u8>, Session), NtlmError> {
    authenticate_at(
        login,
        password,
        negotiate,
        challenge_msg,
        client_challenge,
        exported_session_key,
        filetime_now(),
    )
}

/// [`authenticate`] with the time used when the server sends none (fixed in tests).
fn authenticate_at(
    login: &str,
    password: &Secret,
    negotiate: &[u8],
    challenge_msg: &[u8],
    client_challenge: [u8; 8],
    exported_session_key: [u8; 16],
    fallback_time: [u8; 8],
) -> Result<(Vec<u8>, Session), NtlmError> {
    let ch = parse_challenge(challenge_msg)?;
    for (flag, name) in [
        (NEGOTIATE_SEAL, "sealing"),
        (NEGOTIATE_SIGN, "signing"),
        (
            NEGOTIATE_EXTENDED_SESSIONSECURITY,
            "extended session security",
        ),
        (NEGOTIATE_128, "128-bit keys"),
        (NEGOTIATE_KEY_EXCH, "key exchange"),
        (NEGOTIATE_UNICODE, "Unicode"),
    ] {
        if ch.flags & flag == 0 {
            return Err(NtlmError::WeakServer(name));
        }
    }
    let flags = ch.flags & CLIENT_FLAGS;
    debug_assert_eq!(flags & REQUIRED, REQUIRED);

    let mut pairs = av_pairs(&ch.target_info)?;
    let server_time = pairs
        .iter()
        .find(|(id, v)| *id == AV_TIMESTAMP && v.len() == 8)
        .and_then(|(_, v)| <[u8; 8]>::try_from(v.as_slice()).ok());
    let with_mic = server_time.is_some();
    if with_mic {
        pairs.retain(|(id, _)| *id != AV_FLAGS);
        pairs.push((AV_FLAGS, AV_FLAG_MIC.to_le_bytes().to_vec()));
    }
    let timestamp = server_time.unwrap_or(fallback_time);
    let (domain, user) = split_user(login);
    let key = ntowf_v2(password.expose(), &user, &domain);
    let resp = ntlmv2_response(
        &key,
        &ch.server_challenge,
        &client_challenge,
        &timestamp,
        &encode_av_pairs(&pairs),
    );
    // With a server timestamp the LM response must be zeros (MS-NLMP 3.3.2).
    let lm = if with_mic {
        vec![0u8; 24]
    } else {
        resp.lm_response.clone()
    };
    // NTLMv2: the key exchange key is the session base key.
    let encrypted_key = rc4_once(&resp.session_base_key, &exported_session_key);

    let domain_b = utf16le(&domain);
    let user_b = utf16le(&user);
    let workstation_b: Vec<u8> = Vec::new();
    let payload: [&[u8]; 5] = [&lm, &resp.nt_response, &domain_b, &user_b, &workstation_b];
    let header_len = 88; // fields (64) + version (8) + MIC (16)
    let mut m =
        Vec::with_capacity(header_len + payload.iter().map(|p| p.len()).sum::<usize>() + 16);
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&3u32.to_le_bytes());
    let mut offset = header_len;
    let mut field = |m: &mut Vec<u8>, len: usize| {
        m.extend_from_slice(&(len as u16).to_le_bytes());
        m.extend_from_slice(&(len as u16).to_le_bytes());
        m.extend_from_slice(&(offset as u32).to_le_bytes());
        offset += len;
    };
    for p in &payload {
        field(&mut m, p.len());
    }
    field(&mut m, encrypted_key.len());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&VERSION);
    m.extend_from_slice(&[0; 16]); // MIC, filled in below
    for p in &payload {
        m.extend_from_slice(p);
    }
    m.extend_from_slice(&encrypted_key);
    if with_mic {
        let mic = hmac_md5(&exported_session_key, &[negotiate, challenge_msg, &m]);
        m[72..88].copy_from_slice(&mic);
    }
    Ok((m, Session::client(&exported_session_key)))
}

/// One direction's sealing state: the RC4 stream runs on across messages.
struct Direction {
    sign_key: [u8; 16],
    seal: Rc4<rc4::consts::U16>,
    seq: u32,
}

impl Direction {
    fn new(session_key: &[u8; 16], sign_magic: &[u8], seal_magic: &[u8]) -> Direction {
        let sign_key = md5(&[session_key, sign_magic]);
        let seal_key = md5(&[session_key, seal_magic]);
        Direction {
            sign_key,
            seal: Rc4::<rc4::consts::U16>::new((&seal_key).into()),
            seq: 0,
        }
    }

    /// Seals `data` in place and returns the 16-byte signature (MS-NLMP 3.4.4.2 with
    /// extended session security and key exchange).
    fn wrap(&mut self, data: &mut [u8]) -> [u8; 16] {
        let seq = self.seq.to_le_bytes();
        let mut checksum: [u8; 8] = [0; 8];
        checksum.copy_from_slice(&hmac_md5(&self.sign_key, &[&seq, data])[..8]);
        self.seal.apply_keystream(data);
        self.seal.apply_keystream(&mut checksum);
        self.seq = self.seq.wrapping_add(1);
        let mut sig = [0u8; 16];
        sig[..4].copy_from_slice(&1u32.to_le_bytes());
        sig[4..12].copy_from_slice(&checksum);
        sig[12..].copy_from_slice(&seq);
        sig
    }

    fn unwrap(&mut self, signature: &[u8], data: &mut [u8]) -> Result<(), NtlmError> {
        if signature.len() != 16 || signature[..4] != 1u32.to_le_bytes() {
            return Err(NtlmError::BadMessage("the signature is not NTLM version 1"));
        }
        let seq = self.seq.to_le_bytes();
        self.seal.apply_keystream(data);
        let mut expected: [u8; 8] = [0; 8];
        expected.copy_from_slice(&hmac_md5(&self.sign_key, &[&seq, data])[..8]);
        self.seal.apply_keystream(&mut expected);
        self.seq = self.seq.wrapping_add(1);
        if signature[4..12] != expected || signature[12..] != seq {
            return Err(NtlmError::BadSignature);
        }
        Ok(())
    }
}

const C2S_SIGN: &[u8] = b"session key to client-to-server signing key magic constant\0";
const C2S_SEAL: &[u8] = b"session key to client-to-server sealing key magic constant\0";
const S2C_SIGN: &[u8] = b"session key to server-to-client signing key magic constant\0";
const S2C_SEAL: &[u8] = b"session key to server-to-client sealing key magic constant\0";

/// The sealing state of an authenticated connection, for one side of it.
pub struct Session {
    send: Direction,
    receive: Direction,
}

impl Session {
    pub fn client(session_key: &[u8; 16]) -> Session {
        Session {
            send: Direction::new(session_key, C2S_SIGN, C2S_SEAL),
            receive: Direction::new(session_key, S2C_SIGN, S2C_SEAL),
        }
    }

    /// The server's view (for test servers).
    pub fn server(session_key: &[u8; 16]) -> Session {
        Session {
            send: Direction::new(session_key, S2C_SIGN, S2C_SEAL),
            receive: Direction::new(session_key, C2S_SIGN, C2S_SEAL),
        }
    }

    /// Seals `data` in place; returns its signature.
    pub fn wrap(&mut self, data: &mut [u8]) -> [u8; 16] {
        self.send.wrap(data)
    }

    /// Unseals `data` in place and checks `signature`.
    pub fn unwrap(&mut self, signature: &[u8], data: &mut [u8]) -> Result<(), NtlmError> {
        self.receive.unwrap(signature, data)
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session(<keys redacted>)")
    }
}

#[cfg(test)]
mod tests {
    //! MS-NLMP section 4.2.1 (common values) and 4.2.4 (NTLMv2) test vectors.
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const SERVER_CHALLENGE: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
    const CLIENT_CHALLENGE: [u8; 8] = [0xaa; 8];
    const RANDOM_SESSION_KEY: [u8; 16] = [0x55; 16];

    /// 4.2.4: AV pairs NetBIOS domain "Domain", NetBIOS server "Server", EOL.
    fn target_info() -> Vec<u8> {
        hex("02 00 0c 00 44 00 6f 00 6d 00 61 00 69 00 6e 00
             01 00 0c 00 53 00 65 00 72 00 76 00 65 00 72 00
             00 00 00 00")
    }

    #[test]
    fn nt_hash_and_ntowf_v2() {
        assert_eq!(
            nt_hash("Password").to_vec(),
            hex("a4 f4 9c 40 65 10 bd ca b6 82 4e e7 c3 0f d8 52")
        );
        assert_eq!(
            ntowf_v2("Password", "User", "Domain").to_vec(),
            hex("0c 86 8a 40 3b fd 7a 93 a3 00 1e f2 2e f0 2e 3f")
        );
    }

    #[test]
    fn ntlmv2_responses_and_keys() {
        let key = ntowf_v2("Password", "User", "Domain");
        let r = ntlmv2_response(
            &key,
            &SERVER_CHALLENGE,
            &CLIENT_CHALLENGE,
            &[0; 8],
            &target_info(),
        );
        assert_eq!(
            r.session_base_key.to_vec(),
            hex("8d e4 0c ca db c1 4a 82 f1 5c b0 ad 0d e9 5c a3")
        );
        assert_eq!(
            r.lm_response,
            hex("86 c3 50 97 ac 9c ec 10 25 54 76 4a 57 cc cc 19 aa aa aa aa aa aa aa aa")
        );
        let mut expected_nt = hex("68 cd 0a b8 51 e5 1c 96 aa bc 92 7b eb ef 6a 1c
                                   01 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                                   aa aa aa aa aa aa aa aa 00 00 00 00");
        expected_nt.extend(target_info());
        expected_nt.extend([0, 0, 0, 0]);
        assert_eq!(r.nt_response, expected_nt);
        // 4.2.4.2.3: the random session key encrypted with the key exchange key.
        assert_eq!(
            rc4_once(&r.session_base_key, &RANDOM_SESSION_KEY),
            hex("c5 da d2 54 4f c9 79 90 94 ce 1c e9 0b c9 d0 3e")
        );
    }

    #[test]
    fn sealing_and_signing() {
        let mut s = Session::client(&RANDOM_SESSION_KEY);
        assert_eq!(
            s.send.sign_key.to_vec(),
            hex("47 88 dc 86 1b 47 82 f3 5d 43 fd 98 fe 1a 2d 39")
        );
        // 4.2.4.4: "Plaintext" in UTF-16LE, sealed, and its signature.
        let mut data = utf16le("Plaintext");
        let sig = s.wrap(&mut data);
        assert_eq!(
            data,
            hex("54 e5 01 65 bf 19 36 dc 99 60 20 c1 81 1b 0f 06 fb 5f")
        );
        assert_eq!(
            sig.to_vec(),
            hex("01 00 00 00 7f b3 8e c5 c5 5d 49 76 00 00 00 00")
        );
    }

    #[test]
    fn a_server_session_unwraps_what_the_client_wraps_and_back() {
        let mut client = Session::client(&RANDOM_SESSION_KEY);
        let mut server = Session::server(&RANDOM_SESSION_KEY);
        for i in 0..3 {
            let plain = format!("<s:Envelope>{i} é</s:Envelope>").into_bytes();
            let mut data = plain.clone();
            let sig = client.wrap(&mut data);
            assert_ne!(data, plain);
            server.unwrap(&sig, &mut data).unwrap();
            assert_eq!(data, plain);
            let mut reply = plain.clone();
            let sig = server.wrap(&mut reply);
            client.unwrap(&sig, &mut reply).unwrap();
            assert_eq!(reply, plain);
        }
        // A flipped byte fails the check.
        let mut data = b"hello".to_vec();
        let sig = server.wrap(&mut data);
        data[0] ^= 1;
        assert_eq!(client.unwrap(&sig, &mut data), Err(NtlmError::BadSignature));
    }

    fn challenge_message(flags: u32, info: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(SIGNATURE);
        m.extend_from_slice(&2u32.to_le_bytes());
        m.extend_from_slice(&[0; 8]); // target name
        m.extend_from_slice(&flags.to_le_bytes());
        m.extend_from_slice(&SERVER_CHALLENGE);
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&(info.len() as u16).to_le_bytes());
        m.extend_from_slice(&(info.len() as u16).to_le_bytes());
        m.extend_from_slice(&56u32.to_le_bytes());
        m.extend_from_slice(&VERSION);
        m.extend_from_slice(info);
        m
    }

    #[test]
    fn authenticate_message_carries_the_vector_response() {
        // 4.2.4's challenge flags: 0xe28a8233.
        let ch = challenge_message(0xe28a_8233, &target_info());
        let (auth, _) = authenticate_at(
            "Domain\\User",
            &Secret::new("Password"),
            &negotiate_message(),
            &ch,
            CLIENT_CHALLENGE,
            RANDOM_SESSION_KEY,
            [0; 8],
        )
        .unwrap();
        assert_eq!(&auth[..8], SIGNATURE);
        assert_eq!(u32_at(&auth, 8), Some(3));
        let field = |at: usize| {
            let len = u16_at(&auth, at).unwrap() as usize;
            let off = u32_at(&auth, at + 4).unwrap() as usize;
            auth[off..off + len].to_vec()
        };
        // With time 0 every field is the 4.2.4.3 value.
        assert_eq!(
            field(12),
            hex("86 c3 50 97 ac 9c ec 10 25 54 76 4a 57 cc cc 19 aa aa aa aa aa aa aa aa")
        );
        assert_eq!(field(28), utf16le("Domain"));
        assert_eq!(field(36), utf16le("User"));
        assert_eq!(
            field(52),
            hex("c5 da d2 54 4f c9 79 90 94 ce 1c e9 0b c9 d0 3e")
        );
        let mut expected_nt = hex("68 cd 0a b8 51 e5 1c 96 aa bc 92 7b eb ef 6a 1c
                                   01 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                                   aa aa aa aa aa aa aa aa 00 00 00 00");
        expected_nt.extend(target_info());
        expected_nt.extend([0, 0, 0, 0]);
        assert_eq!(field(20), expected_nt);
        // No MsvAvTimestamp from the server, so no MIC.
        assert_eq!(&auth[72..88], &[0; 16]);
    }

    #[test]
    fn weak_or_broken_challenges_are_refused() {
        let no_seal = challenge_message(0xe28a_8233 & !NEGOTIATE_SEAL, &target_info());
        let r = authenticate(
            "u",
            &Secret::new("p"),
            &negotiate_message(),
            &no_seal,
            CLIENT_CHALLENGE,
            RANDOM_SESSION_KEY,
        );
        assert!(matches!(r, Err(NtlmError::WeakServer("sealing"))));
        assert!(parse_challenge(b"NTLMSSP\0\x02\0\0\0").is_err());
        assert!(parse_challenge(b"garbage").is_err());
        let mut bad_info = challenge_message(0xe28a_8233, &target_info());
        bad_info[44] = 0xff; // target info offset far outside
        assert!(parse_challenge(&bad_info).is_err());
        assert!(av_pairs(&[2, 0, 50, 0, 1]).is_err());
    }

    #[test]
    fn user_names() {
        assert_eq!(split_user("ACME\\admin"), ("ACME".into(), "admin".into()));
        assert_eq!(
            split_user("admin@acme.local"),
            ("".into(), "admin@acme.local".into())
        );
    }
}
