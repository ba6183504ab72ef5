//! A WinRM server for tests, on loopback: HTTP/1.1 (optionally TLS) with Basic
//! authentication, speaking the WinRS cmd shell the way Windows does (MS-WSMV).
//!
//! It is not Windows: commands "run" from a table the test fills in (`program`), plus a few
//! built-ins (`echo`, `echo %TEMP%`, `del`, the upload and read scripts, temporary script
//! files). What it does copy from Windows: faults as HTTP 500 with SOAP fault bodies,
//! `w:TimedOut` when a command has nothing to say, ShellIds with and without `uuid:`, several
//! namespace prefix styles and empty-stream shapes, output split across Receives, and 401 for
//! wrong credentials.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use base64::Engine as _;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use runner::transport::winrm::ntlm::Session;
use sha2::{Digest, Sha256};

const NS_ADDRESSING: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
const NS_WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
const NS_SHELL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";

pub const TEMP_DIR: &str = "C:\\Users\\admin\\AppData\\Local\\Temp";

/// What one Receive answers for a command.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Output chunks (each becomes one `rsp:Stream`), optionally ending the command.
    Output {
        chunks: Vec<(Out, Vec<u8>)>,
        done: Option<u32>,
    },
    /// The `w:TimedOut` fault: nothing to report within OperationTimeout.
    TimedOut,
    /// Never finishes by itself: each Receive waits (up to a second) for Signal terminate,
    /// then answers TimedOut. Not consumed.
    Hang,
    /// The shell vanished (service restart): `w:InvalidSelectors`.
    LoseShell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    Stdout,
    Stderr,
}

impl Reply {
    pub fn stdout(text: &str) -> Reply {
        Reply::Output {
            chunks: vec![(Out::Stdout, text.as_bytes().to_vec())],
            done: None,
        }
    }
    pub fn done(code: u32) -> Reply {
        Reply::Output {
            chunks: vec![],
            done: Some(code),
        }
    }
    pub fn finish(stdout: &str, stderr: &str, code: u32) -> Reply {
        let mut chunks = Vec::new();
        if !stdout.is_empty() {
            chunks.push((Out::Stdout, stdout.as_bytes().to_vec()));
        }
        if !stderr.is_empty() {
            chunks.push((Out::Stderr, stderr.as_bytes().to_vec()));
        }
        Reply::Output {
            chunks,
            done: Some(code),
        }
    }
}

/// One request as received, for shape checks.
#[derive(Debug, Clone)]
pub struct Logged {
    /// Local part of the Action URI, e.g. `Create`, `Receive`.
    pub action: String,
    pub body: String,
    pub authorized: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub user: String,
    pub password: String,
    /// Serve TLS with a generated self-signed certificate.
    pub https: bool,
    /// Answer every request with a bare HTTP 500, as Windows does for Basic over HTTP when
    /// AllowUnencrypted is false.
    pub require_encryption: bool,
    /// After a Delete, close the connection when the next request arrives on it, without an
    /// answer: what a client sees when HTTP.sys closes an idle connection just as the next
    /// request is sent.
    pub close_after_delete: bool,
    /// Require NTLM (Negotiate) instead of Basic; over HTTP every body must then be sealed.
    pub ntlm: bool,
}

/// How a detached job behaves: its output appears a chunk per status poll, then it exits (or,
/// with `code: None`, it never does).
#[derive(Debug, Clone)]
pub struct JobProgram {
    pub chunks: Vec<(Out, Vec<u8>)>,
    pub code: Option<u32>,
}

#[derive(Debug, Clone)]
struct Job {
    program: JobProgram,
    /// How many chunks have been "written" so far.
    shown: usize,
    killed: bool,
}

impl Job {
    fn file(&self, which: Out) -> Vec<u8> {
        self.program.chunks[..self.shown]
            .iter()
            .filter(|(o, _)| *o == which)
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }
}

struct Cmd {
    program: VecDeque<Reply>,
    stdin: Vec<u8>,
    stdin_done: bool,
    terminated: bool,
    finished: bool,
    upload: Option<String>,
}

struct ShellState {
    commands: HashMap<String, Cmd>,
    /// The shell's environment (`rsp:Environment` of Create), which its commands inherit.
    env: BTreeMap<String, String>,
}

/// A command as it started: its line and the environment of its shell; and the stdin it was
/// sent once that ended.
#[derive(Debug, Clone)]
pub struct Started {
    pub line: String,
    pub env: BTreeMap<String, String>,
    pub stdin: Option<Vec<u8>>,
}

#[derive(Default)]
struct State {
    programs: HashMap<String, Vec<Reply>>,
    /// Every command started, by command id.
    started: Vec<(String, Started)>,
    shells: HashMap<String, ShellState>,
    created: u64,
    deleted: u64,
    signals: Vec<(String, String)>,
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
    log: Vec<Logged>,
    /// How each table script arrived: true when through a temporary file.
    delivered: Vec<(String, bool)>,
    quota_exceeded: bool,
    corrupt_uploads: bool,
    /// Every request is read, logged and dropped with its connection, unanswered: a network
    /// between client and server that failed.
    unreachable: bool,
    /// Detached jobs the test scripts, by command text, and the jobs started, by folder.
    job_programs: HashMap<String, JobProgram>,
    jobs: BTreeMap<String, Job>,
    /// Folders of the jobs stopped with taskkill.
    killed_jobs: Vec<String>,
    sealed_requests: u64,
    style: u64,
}

pub struct WinrmServer {
    addr: SocketAddr,
    state: Arc<(Mutex<State>, Condvar)>,
    stop: Arc<AtomicBool>,
    /// SHA-256 of the certificate (DER), `AB:CD:..`, when serving TLS.
    pub cert_sha256: Option<String>,
    /// The certificate in PEM, when serving TLS (usable as a `ca_file`).
    pub cert_pem: Option<Vec<u8>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn new_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    format!("{pid:08X}-0000-4000-A000-{n:012X}")
}

impl WinrmServer {
    /// Starts on `ip` (a 127.0.0.x address) and a free port.
    pub fn start(ip: &str, opts: Options) -> WinrmServer {
        let listener = TcpListener::bind((ip, 0)).expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let mut st = State::default();
        st.dirs.insert("C:\\".into());
        st.dirs.insert("C:\\Temp".into());
        st.dirs.insert(TEMP_DIR.into());
        let state = Arc::new((Mutex::new(st), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (acceptor, cert_sha256, cert_pem) = if opts.https {
            let (acceptor, fp, pem) = tls_acceptor(ip);
            (Some(Arc::new(acceptor)), Some(fp), Some(pem))
        } else {
            (None, None, None)
        };
        let opts = Arc::new(opts);
        {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(tcp) = conn else { continue };
                    let _ = tcp.set_nodelay(true);
                    let state = Arc::clone(&state);
                    let opts = Arc::clone(&opts);
                    let acceptor = acceptor.clone();
                    thread::spawn(move || match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(tcp) {
                                serve(tls, &state, &opts, addr);
                            }
                        }
                        None => serve(tcp, &state, &opts, addr),
                    });
                }
            });
        }
        WinrmServer {
            addr,
            state,
            stop,
            cert_sha256,
            cert_pem,
        }
    }

    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every command started so far, in order, with its shell's environment and its stdin.
    pub fn started(&self) -> Vec<Started> {
        self.state
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .started
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// What running `script` (a cmd line, a decoded PowerShell script, or the text of a
    /// temporary script file) answers, one entry per Receive.
    pub fn program(&self, script: &str, replies: Vec<Reply>) {
        self.with(|s| {
            s.programs.insert(script.to_string(), replies);
        });
    }

    /// A detached job: what runner's Windows job wrapper would see when it starts `command`.
    pub fn job(&self, command: &str, program: JobProgram) {
        self.with(|s| {
            s.job_programs.insert(command.to_string(), program);
        });
    }

    /// The job folders started so far, and whether each was killed / is still present.
    pub fn jobs(&self) -> Vec<(String, bool)> {
        self.with(|s| s.jobs.iter().map(|(d, j)| (d.clone(), j.killed)).collect())
    }

    /// The folders of the jobs that were stopped with taskkill.
    pub fn killed_jobs(&self) -> Vec<String> {
        self.with(|s| s.killed_jobs.clone())
    }

    pub fn set_quota_exceeded(&self, on: bool) {
        self.with(|s| s.quota_exceeded = on);
    }

    /// While on, no request gets an answer: each connection is closed once a request arrived
    /// (see [`State::unreachable`]). Running commands go on; their shells stay open.
    pub fn set_unreachable(&self, on: bool) {
        self.with(|s| s.unreachable = on);
    }

    pub fn set_corrupt_uploads(&self, on: bool) {
        self.with(|s| s.corrupt_uploads = on);
    }

    pub fn add_dir(&self, dir: &str) {
        self.with(|s| {
            s.dirs.insert(dir.to_string());
        });
    }

    /// Puts a file on the "target", for reads (`fetch`, `copy`).
    pub fn put_file(&self, path: &str, bytes: &[u8]) {
        self.with(|s| {
            s.files.insert(path.to_string(), bytes.to_vec());
        });
    }

    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        self.with(|s| s.files.get(path).cloned())
    }

    pub fn files(&self) -> Vec<String> {
        self.with(|s| s.files.keys().cloned().collect())
    }

    /// Shells created and not deleted.
    pub fn open_shells(&self) -> usize {
        self.with(|s| s.shells.len())
    }

    pub fn created_and_deleted(&self) -> (u64, u64) {
        self.with(|s| (s.created, s.deleted))
    }

    /// (command id, signal code URI) of every Signal.
    pub fn signals(&self) -> Vec<(String, String)> {
        self.with(|s| s.signals.clone())
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.with(|s| s.log.clone())
    }

    /// Blocks until `script` has been started (at most `limit`); true if it was.
    pub fn wait_started(&self, script: &str, limit: Duration) -> bool {
        let (lock, cvar) = &*self.state;
        let g = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (g, _) = cvar
            .wait_timeout_while(g, limit, |s| !s.delivered.iter().any(|(d, _)| d == script))
            .unwrap_or_else(|e| e.into_inner());
        g.delivered.iter().any(|(d, _)| d == script)
    }

    /// How many requests arrived sealed with NTLM.
    pub fn sealed_requests(&self) -> u64 {
        self.with(|s| s.sealed_requests)
    }

    /// (script, came through a temporary file) for every table command run.
    pub fn delivered(&self) -> Vec<(String, bool)> {
        self.with(|s| s.delivered.clone())
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut g = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }
}

impl Drop for WinrmServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn tls_acceptor(ip: &str) -> (openssl::ssl::SslAcceptor, String, Vec<u8>) {
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
fn serve<S: Read + Write>(
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

/// The server side of NTLMv2, written from MS-NLMP independently of the client code (only
/// the sealing state, checked against the specification's vectors, is shared).
mod ntlm_server {
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

/// What the server needs from a request.
#[derive(Debug, Default)]
pub struct Request {
    pub action: String,
    pub message_id: String,
    pub shell_id: Option<String>,
    pub command: Option<String>,
    pub command_id: Option<String>,
    pub signal_code: Option<String>,
    pub send_data: Option<Vec<u8>>,
    pub send_end: bool,
    pub options: BTreeMap<String, String>,
    /// `rsp:Environment` of a Create: name and value of each `rsp:Variable`.
    pub environment: Vec<(String, String)>,
}

/// Namespace, local name and attributes of an element being read.
type OpenElement = (String, String, Vec<(String, String)>);

/// Parses a request by namespace URI (the test server is as strict as the client).
pub fn parse_request(xml: &str) -> Request {
    let mut r = Request::default();
    let mut reader = NsReader::from_str(xml);
    let mut stack: Vec<OpenElement> = Vec::new();
    let mut text = String::new();
    while let Ok((ns, ev)) = reader.read_resolved_event() {
        let ns = match ns {
            ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
            _ => String::new(),
        };
        let (e, empty) = match ev {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::Text(t) => {
                text.push_str(&t.xml_content().unwrap_or_default());
                continue;
            }
            Event::GeneralRef(g) => {
                if let Ok(Some(c)) = g.resolve_char_ref() {
                    text.push(c);
                } else {
                    text.push_str(match g.decode().unwrap_or_default().as_ref() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        _ => "",
                    });
                }
                continue;
            }
            Event::End(_) => {
                let Some((ns, local, attrs)) = stack.pop() else {
                    break;
                };
                end_element(&mut r, &ns, &local, &attrs, &text);
                text.clear();
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
        let attrs: Vec<(String, String)> = e
            .attributes()
            .flatten()
            .map(|a| {
                (
                    String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
                    a.unescape_value()
                        .map(|v| v.into_owned())
                        .unwrap_or_default(),
                )
            })
            .collect();
        let get = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        if ns == NS_SHELL && (local == "DesiredStream" || local == "Signal") {
            r.command_id = get("CommandId");
        }
        if ns == NS_SHELL && local == "Stream" {
            r.command_id = get("CommandId");
            r.send_end = get("End").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            r.send_data = Some(Vec::new());
        }
        text.clear();
        if empty {
            end_element(&mut r, &ns, &local, &attrs, "");
        } else {
            stack.push((ns, local, attrs));
        }
    }
    r
}

fn end_element(r: &mut Request, ns: &str, local: &str, attrs: &[(String, String)], text: &str) {
    let get = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let t = text.trim().to_string();
    match (ns, local) {
        (NS_ADDRESSING, "Action") => r.action = t,
        (NS_ADDRESSING, "MessageID") => r.message_id = t,
        (NS_WSMAN, "Selector") if get("Name").as_deref() == Some("ShellId") => r.shell_id = Some(t),
        (NS_WSMAN, "Option") => {
            r.options.insert(get("Name").unwrap_or_default(), t);
        }
        (NS_SHELL, "Command") => r.command = Some(text.to_string()),
        (NS_SHELL, "Variable") => r
            .environment
            .push((get("Name").unwrap_or_default(), text.to_string())),
        (NS_SHELL, "Code") => r.signal_code = Some(t),
        (NS_SHELL, "Stream") => {
            r.send_data = base64::engine::general_purpose::STANDARD.decode(&t).ok()
        }
        _ => {}
    }
}

/// Namespace prefixes and quoting, varied per response like different Windows versions.
struct Style {
    s: &'static str,
    a: &'static str,
    w: &'static str,
    rsp: &'static str,
    q: char,
    nl: &'static str,
}

const STYLES: [Style; 3] = [
    Style {
        s: "s",
        a: "a",
        w: "w",
        rsp: "rsp",
        q: '"',
        nl: "",
    },
    Style {
        s: "env",
        a: "wsa",
        w: "wsman",
        rsp: "shell",
        q: '\'',
        nl: "\n  ",
    },
    Style {
        s: "SOAP-ENV",
        a: "addr",
        w: "w",
        rsp: "r",
        q: '"',
        nl: "\r\n",
    },
];

fn envelope(st: &Style, action: &str, relates_to: &str, body: &str) -> String {
    let q = st.q;
    let (s, a, w, rsp, nl) = (st.s, st.a, st.w, st.rsp, st.nl);
    format!(
        "<{s}:Envelope xml:lang={q}en-US{q} xmlns:{s}={q}{NS_SOAP}{q} xmlns:{a}={q}{NS_ADDRESSING}{q} xmlns:x={q}http://schemas.xmlsoap.org/ws/2004/09/transfer{q} xmlns:{w}={q}{NS_WSMAN}{q} xmlns:{rsp}={q}{NS_SHELL}{q} xmlns:p={q}http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd{q}>{nl}<{s}:Header>{nl}<{a}:Action>{action}</{a}:Action>{nl}<{a}:MessageID>uuid:{}</{a}:MessageID>{nl}<{a}:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</{a}:To>{nl}<{a}:RelatesTo>{relates_to}</{a}:RelatesTo>{nl}</{s}:Header>{nl}<{s}:Body>{body}</{s}:Body>{nl}</{s}:Envelope>",
        new_id()
    )
}

fn fault(
    st: &Style,
    relates_to: &str,
    code: &str,
    subcode: &str,
    reason: &str,
    wsman_code: u64,
) -> String {
    let (s, w, q) = (st.s, st.w, st.q);
    let body = format!(
        "<{s}:Fault><{s}:Code><{s}:Value>{s}:{code}</{s}:Value><{s}:Subcode><{s}:Value>{w}:{subcode}</{s}:Value></{s}:Subcode></{s}:Code><{s}:Reason><{s}:Text xml:lang={q}en-US{q}>{reason}</{s}:Text></{s}:Reason><{s}:Detail><f:WSManFault xmlns:f={q}http://schemas.microsoft.com/wbem/wsman/1/wsmanfault{q} Code={q}{wsman_code}{q} Machine={q}test{q}><f:Message>{reason}</f:Message></f:WSManFault></{s}:Detail></{s}:Fault>"
    );
    envelope(
        st,
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
        relates_to,
        &body,
    )
}

/// The QuotaLimit fault as WinRM 2.0 sends it: an MSFT_WmiError detail, no WSManFault.
fn quota_fault(st: &Style, relates_to: &str) -> String {
    let (s, w, q) = (st.s, st.w, st.q);
    let body = format!(
        "<{s}:Fault><{s}:Code><{s}:Value>{s}:Sender</{s}:Value><{s}:Subcode><{s}:Value>{w}:QuotaLimit</{s}:Value></{s}:Subcode></{s}:Code><{s}:Reason><{s}:Text xml:lang={q}en-US{q}>The WS-Management service cannot process the request. The maximum number of concurrent shells for this user has been exceeded. </{s}:Text></{s}:Reason><{s}:Detail><p:MSFT_WmiError xmlns:p={q}http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/MSFT_WmiError{q}><p:Message>This user is allowed a maximum number of 30 concurrent shells, which has been exceeded.</p:Message><p:error_Code>2150859173</p:error_Code></p:MSFT_WmiError></{s}:Detail></{s}:Fault>"
    );
    envelope(
        st,
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
        relates_to,
        &body,
    )
}

fn stream_xml(st: &Style, name: &str, cmd: &str, data: &[u8], end: bool, shape: u64) -> String {
    let (rsp, q) = (st.rsp, st.q);
    if data.is_empty() {
        // Windows writes empty final streams both ways.
        if shape % 2 == 0 {
            format!("<{rsp}:Stream Name={q}{name}{q} CommandId={q}{cmd}{q} End={q}true{q}></{rsp}:Stream>")
        } else {
            format!("<{rsp}:Stream End={q}true{q} CommandId={q}{cmd}{q} Name={q}{name}{q}/>")
        }
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        let end = if end {
            format!(" End={q}true{q}")
        } else {
            String::new()
        };
        format!("<{rsp}:Stream Name={q}{name}{q} CommandId={q}{cmd}{q}{end}>{b64}</{rsp}:Stream>")
    }
}

fn handle(req: &Request, state: &Arc<(Mutex<State>, Condvar)>, addr: SocketAddr) -> (u16, String) {
    let (lock, cvar) = &**state;
    let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
    g.style += 1;
    let style_n = g.style;
    let st = &STYLES[(style_n % 3) as usize];
    let rel = req.message_id.as_str();
    let invalid_selectors = |st: &Style| {
        (
            500,
            fault(
                st,
                rel,
                "Sender",
                "InvalidSelectors",
                "The WS-Management service cannot process the request because the request contained invalid selectors for the resource. ",
                2150858843,
            ),
        )
    };
    let action = req.action.rsplit('/').next().unwrap_or_default();
    match action {
        "Create" => {
            if g.quota_exceeded {
                return (500, quota_fault(st, rel));
            }
            g.created += 1;
            // Every other shell id comes with the `uuid:` prefix of WinRM 1.1.
            let old_style = g.created % 2 == 1;
            let id = if old_style {
                format!("uuid:{}", new_id())
            } else {
                new_id()
            };
            g.shells.insert(
                id.clone(),
                ShellState {
                    commands: HashMap::new(),
                    env: req.environment.iter().cloned().collect(),
                },
            );
            let (w, a, rsp, q) = (st.w, st.a, st.rsp, st.q);
            let shell = if old_style {
                String::new()
            } else {
                format!("<{rsp}:Shell><{rsp}:ShellId>{id}</{rsp}:ShellId><{rsp}:Owner>admin</{rsp}:Owner><{rsp}:IdleTimeOut>PT7200.000S</{rsp}:IdleTimeOut><{rsp}:InputStreams>stdin</{rsp}:InputStreams><{rsp}:OutputStreams>stdout stderr</{rsp}:OutputStreams></{rsp}:Shell>")
            };
            let body = format!(
                "<x:ResourceCreated><{a}:Address>http://{addr}/wsman</{a}:Address><{a}:ReferenceParameters><{w}:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</{w}:ResourceURI><{w}:SelectorSet><{w}:Selector Name={q}ShellId{q}>{id}</{w}:Selector></{w}:SelectorSet></{a}:ReferenceParameters></x:ResourceCreated>{shell}"
            );
            (
                200,
                envelope(
                    st,
                    "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
                    rel,
                    &body,
                ),
            )
        }
        "Delete" => {
            let Some(id) = &req.shell_id else {
                return invalid_selectors(st);
            };
            if g.shells.remove(id).is_none() {
                return invalid_selectors(st);
            }
            g.deleted += 1;
            cvar.notify_all();
            (
                200,
                envelope(
                    st,
                    "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse",
                    rel,
                    "",
                ),
            )
        }
        "Command" => {
            let line = req.command.clone().unwrap_or_default();
            let Some(shell_id) = req.shell_id.clone() else {
                return invalid_selectors(st);
            };
            if !g.shells.contains_key(&shell_id) {
                return invalid_selectors(st);
            }
            let env = g
                .shells
                .get(&shell_id)
                .map(|s| s.env.clone())
                .unwrap_or_default();
            let cmd = run(&mut g, &line, &env);
            cvar.notify_all();
            let cmd_id = new_id();
            g.started.push((
                cmd_id.clone(),
                Started {
                    line: line.clone(),
                    env,
                    stdin: None,
                },
            ));
            if let Some(sh) = g.shells.get_mut(&shell_id) {
                sh.commands.insert(cmd_id.clone(), cmd);
            }
            let rsp = st.rsp;
            (
                200,
                envelope(
                    st,
                    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandResponse",
                    rel,
                    &format!("<{rsp}:CommandResponse><{rsp}:CommandId>{cmd_id}</{rsp}:CommandId></{rsp}:CommandResponse>"),
                ),
            )
        }
        "Send" => {
            let (Some(shell_id), Some(cmd_id)) = (&req.shell_id, &req.command_id) else {
                return invalid_selectors(st);
            };
            let Some(cmd) = g
                .shells
                .get_mut(shell_id)
                .and_then(|s| s.commands.get_mut(cmd_id))
            else {
                return invalid_selectors(st);
            };
            if cmd.finished {
                return (
                    500,
                    fault(
                        st,
                        rel,
                        "Receiver",
                        "InternalError",
                        "The pipe is being closed. ",
                        2147942632,
                    ),
                );
            }
            cmd.stdin
                .extend_from_slice(req.send_data.as_deref().unwrap_or_default());
            if req.send_end {
                cmd.stdin_done = true;
                let all = cmd.stdin.clone();
                if let Some((_, s)) = g.started.iter_mut().find(|(id, _)| id == cmd_id) {
                    s.stdin = Some(all);
                }
            }
            let rsp = st.rsp;
            (
                200,
                envelope(
                    st,
                    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SendResponse",
                    rel,
                    &format!("<{rsp}:SendResponse/>"),
                ),
            )
        }
        "Signal" => {
            let (Some(shell_id), Some(cmd_id)) = (req.shell_id.clone(), req.command_id.clone())
            else {
                return invalid_selectors(st);
            };
            let code = req.signal_code.clone().unwrap_or_default();
            g.signals.push((cmd_id.clone(), code));
            let Some(cmd) = g
                .shells
                .get_mut(&shell_id)
                .and_then(|s| s.commands.get_mut(&cmd_id))
            else {
                return invalid_selectors(st);
            };
            cmd.terminated = true;
            cvar.notify_all();
            let rsp = st.rsp;
            (
                200,
                envelope(
                    st,
                    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SignalResponse",
                    rel,
                    &format!("<{rsp}:SignalResponse/>"),
                ),
            )
        }
        "Receive" => {
            let (Some(shell_id), Some(cmd_id)) = (req.shell_id.clone(), req.command_id.clone())
            else {
                return invalid_selectors(st);
            };
            let timed_out = |st: &Style| {
                (
                    500,
                    fault(
                        st,
                        rel,
                        "Receiver",
                        "TimedOut",
                        "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.  ",
                        2150858793,
                    ),
                )
            };
            loop {
                let Some(cmd) = g
                    .shells
                    .get_mut(&shell_id)
                    .and_then(|s| s.commands.get_mut(&cmd_id))
                else {
                    return invalid_selectors(st);
                };
                if let Some(path) = cmd.upload.clone() {
                    if !cmd.stdin_done {
                        return timed_out(st);
                    }
                    let text = String::from_utf8_lossy(&cmd.stdin).into_owned();
                    let mut bytes = Vec::new();
                    for l in text.lines() {
                        let l = l.trim();
                        if !l.is_empty() {
                            match base64::engine::general_purpose::STANDARD.decode(l) {
                                Ok(b) => bytes.extend(b),
                                Err(_) => return (500, String::new()),
                            }
                        }
                    }
                    cmd.upload = None;
                    let corrupt = g.corrupt_uploads;
                    if corrupt && !bytes.is_empty() {
                        bytes[0] ^= 0xff;
                    }
                    let sha: String = Sha256::digest(&bytes)
                        .iter()
                        .map(|b| format!("{b:02X}"))
                        .collect();
                    let report = format!("runner-upload {} {sha}", bytes.len());
                    // `path` is "DEST" or "DEST\nEXPECTED": the script moves its new file
                    // into place only when it holds what was expected.
                    let (dest, expected) = match path.split_once('\n') {
                        Some((d, e)) => (d.to_string(), Some(e.to_string())),
                        None => (path, None),
                    };
                    let matches = expected
                        .as_deref()
                        .is_none_or(|e| e.eq_ignore_ascii_case(&report["runner-upload ".len()..]));
                    if matches {
                        g.files.insert(dest, bytes);
                    }
                    let Some(cmd) = g
                        .shells
                        .get_mut(&shell_id)
                        .and_then(|s| s.commands.get_mut(&cmd_id))
                    else {
                        return invalid_selectors(st);
                    };
                    cmd.program.push_back(Reply::finish(&report, "", 0));
                    continue;
                }
                if cmd.terminated
                    && cmd
                        .program
                        .front()
                        .is_some_and(|r| matches!(r, Reply::Hang))
                {
                    cmd.program.clear();
                    cmd.program.push_back(Reply::done(1));
                }
                match cmd.program.front().cloned() {
                    None => {
                        cmd.finished = true;
                        return timed_out(st);
                    }
                    Some(Reply::TimedOut) => {
                        cmd.program.pop_front();
                        return timed_out(st);
                    }
                    Some(Reply::Hang) => {
                        let (ng, _) = cvar
                            .wait_timeout(g, Duration::from_secs(1))
                            .unwrap_or_else(|e| e.into_inner());
                        g = ng;
                        let still = g
                            .shells
                            .get(&shell_id)
                            .and_then(|s| s.commands.get(&cmd_id))
                            .is_some_and(|c| !c.terminated);
                        if still {
                            return timed_out(st);
                        }
                        continue;
                    }
                    Some(Reply::LoseShell) => {
                        g.shells.remove(&shell_id);
                        return invalid_selectors(st);
                    }
                    Some(Reply::Output { chunks, done }) => {
                        cmd.program.pop_front();
                        if done.is_some() {
                            cmd.finished = true;
                        }
                        let mut body = String::new();
                        for (i, (which, data)) in chunks.iter().enumerate() {
                            let name = if *which == Out::Stdout {
                                "stdout"
                            } else {
                                "stderr"
                            };
                            body.push_str(&stream_xml(st, name, &cmd_id, data, false, i as u64));
                            body.push_str(st.nl);
                        }
                        let rsp = st.rsp;
                        let q = st.q;
                        let state = match done {
                            Some(code) => {
                                body.push_str(&stream_xml(st, "stdout", &cmd_id, b"", true, style_n));
                                body.push_str(&stream_xml(st, "stderr", &cmd_id, b"", true, style_n + 1));
                                format!("<{rsp}:CommandState CommandId={q}{cmd_id}{q} State={q}http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done{q}><{rsp}:ExitCode>{code}</{rsp}:ExitCode></{rsp}:CommandState>")
                            }
                            None => format!("<{rsp}:CommandState CommandId={q}{cmd_id}{q} State={q}http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running{q}/>"),
                        };
                        let body = format!(
                            "<{rsp}:ReceiveResponse SequenceID={q}0{q}>{body}{state}</{rsp}:ReceiveResponse>"
                        );
                        return (
                            200,
                            envelope(
                                st,
                                "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/ReceiveResponse",
                                rel,
                                &body,
                            ),
                        );
                    }
                }
            }
        }
        _ => (
            500,
            fault(
                st,
                rel,
                "Sender",
                "ActionNotSupported",
                "The action is not supported by the service. ",
                2150858753,
            ),
        ),
    }
}

/// The text between `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// runner's detached-job scripts (launch, status, tail, kill, remove), emulated on the jobs
/// table: this checks the conversation, not Windows itself.
fn job_script(g: &mut State, script: &str) -> Option<Reply> {
    let dir = between(script, "ExpandEnvironmentVariables('", "')")?.replace("''", "'");
    if !dir.contains("runner-jobs") {
        return None;
    }
    if script.contains("Win32_Process") {
        let b64 = between(script, "FromBase64String('", "')")?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let command = String::from_utf8(bytes).ok()?;
        let Some(program) = g.job_programs.get(&command).cloned() else {
            return Some(Reply::finish(
                "",
                &format!("no job scripted for {command:?}\r\n"),
                1,
            ));
        };
        g.jobs.insert(
            dir,
            Job {
                program,
                shown: 0,
                killed: false,
            },
        );
        return Some(Reply::finish("4242", "", 0));
    }
    if script.contains("'DONE ' +") {
        let Some(job) = g.jobs.get_mut(&dir) else {
            return Some(Reply::finish("GONE\r\n", "", 0));
        };
        if job.shown < job.program.chunks.len() {
            job.shown += 1;
        }
        let all_shown = job.shown == job.program.chunks.len();
        let text = match (job.killed, all_shown, job.program.code) {
            (true, _, _) => "LOST".to_string(),
            // cmd prints ERRORLEVEL as a signed 32-bit number.
            (false, true, Some(code)) => format!("DONE {}", code as i32),
            _ => "RUNNING".to_string(),
        };
        return Some(Reply::finish(&format!("{text}\r\n"), "", 0));
    }
    if script.contains("OpenStandardOutput") {
        let which = if script.contains("'out'") {
            Out::Stdout
        } else {
            Out::Stderr
        };
        let offset: usize = between(script, "Seek(", ",")?.trim().parse().ok()?;
        let bytes = g.jobs.get(&dir).map(|j| j.file(which)).unwrap_or_default();
        let rest = bytes.get(offset..).unwrap_or_default();
        return Some(Reply::Output {
            chunks: if rest.is_empty() {
                vec![]
            } else {
                vec![(Out::Stdout, rest.to_vec())]
            },
            done: Some(0),
        });
    }
    if script.contains("taskkill.exe /T /F") {
        if let Some(job) = g.jobs.get_mut(&dir) {
            job.killed = true;
            g.killed_jobs.push(dir.clone());
        }
        return Some(Reply::finish("GONE\r\n", "", 0));
    }
    if script.contains("Remove-Item -LiteralPath") {
        g.jobs.remove(&dir);
        return Some(Reply::done(0));
    }
    None
}

/// The answer of the read script: `runner-read LENGTH SHA256`, the file as base64 lines of
/// 48 KiB, `runner-end`; exit 3 for a missing file.
fn read_reply(g: &State, script: &str) -> Reply {
    let path = script
        .lines()
        .find_map(|l| l.strip_prefix("$p = "))
        .and_then(unquote_ps)
        .unwrap_or_default();
    let Some(bytes) = g.files.get(&path) else {
        return Reply::finish("", &format!("no such file: {path}\r\n"), 3);
    };
    let sha: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let mut out = format!("runner-read {} {sha}\r\n", bytes.len());
    for block in bytes.chunks(48 * 1024) {
        out.push_str(&base64::engine::general_purpose::STANDARD.encode(block));
        out.push_str("\r\n");
    }
    out.push_str("runner-end\r\n");
    Reply::finish(&out, "", 0)
}

fn decode_ps(b64: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]))
        .collect();
    String::from_utf16(&units).ok()
}

fn unquote_ps(s: &str) -> Option<String> {
    let inner = s.strip_prefix('\'')?;
    let end = inner.rfind('\'')?;
    Some(inner[..end].replace("''", "'"))
}

fn parent_of(path: &str) -> &str {
    match path.rfind('\\') {
        Some(0) | None => "",
        Some(i) if i == 2 && path.as_bytes().get(1) == Some(&b':') => &path[..3],
        Some(i) => &path[..i],
    }
}

/// "Runs" a command line: decides what its Receives will answer.
fn run(g: &mut State, line: &str, env: &BTreeMap<String, String>) -> Cmd {
    let mut cmd = Cmd {
        program: VecDeque::new(),
        stdin: Vec::new(),
        stdin_done: false,
        terminated: false,
        finished: false,
        upload: None,
    };
    let script: Option<(String, bool)> = if let Some(rest) =
        line.strip_prefix("powershell.exe -NoProfile -NonInteractive -EncodedCommand ")
    {
        match decode_ps(rest.trim()) {
            Some(script) => {
                if let Some(reply) = job_script(g, &script) {
                    cmd.program.push_back(reply);
                    return cmd;
                }
                if script.contains("'runner-read '") {
                    cmd.program.push_back(read_reply(g, &script));
                    return cmd;
                }
                if script.contains("'runner-upload '") {
                    let field = |name: &str| {
                        script
                            .lines()
                            .find_map(|l| l.strip_prefix(name))
                            .and_then(unquote_ps)
                            .unwrap_or_default()
                    };
                    let path = field("$p = ");
                    let expected = field("$e = ");
                    let parent = parent_of(&path).to_string();
                    if !g.dirs.contains(&parent) {
                        cmd.program.push_back(Reply::finish(
                            "",
                            &format!("directory missing: {parent}\r\n"),
                            3,
                        ));
                    } else if expected.is_empty() {
                        cmd.upload = Some(path);
                    } else {
                        cmd.upload = Some(format!("{path}\n{expected}"));
                    }
                    return cmd;
                }
                Some((script, false))
            }
            None => None,
        }
    } else if let Some(rest) = line
        .strip_prefix("powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File ")
    {
        let path = rest.trim().trim_matches('"');
        g.files
            .get(path)
            .map(|b| (String::from_utf8_lossy(b).into_owned(), true))
    } else if line.starts_with('"') && line.ends_with(".cmd\"") {
        let path = line.trim_matches('"');
        g.files.get(path).map(|b| {
            let text = String::from_utf8_lossy(b).replace("\r\n", "\n");
            let text = text.strip_prefix("@echo off\n").unwrap_or(&text);
            (text.trim_end_matches('\n').to_string(), true)
        })
    } else if line == "echo %TEMP%" {
        cmd.program
            .push_back(Reply::finish(&format!("{TEMP_DIR}\r\n"), "", 0));
        return cmd;
    } else if let Some(rest) = line.strip_prefix("del /f /q ") {
        let path = rest.trim().trim_matches('"');
        let existed = g.files.remove(path).is_some();
        cmd.program.push_back(if existed {
            Reply::done(0)
        } else {
            Reply::finish("", "Could Not Find the file\r\n", 1)
        });
        return cmd;
    } else {
        Some((line.to_string(), false))
    };
    let Some((script, via_file)) = script else {
        cmd.program.push_back(Reply::finish(
            "",
            "The system cannot find the file specified.\r\n",
            1,
        ));
        return cmd;
    };
    if let Some(reply) = job_script(g, &script) {
        cmd.program.push_back(reply);
        return cmd;
    }
    g.delivered.push((script.clone(), via_file));
    if let Some(p) = g.programs.get(&script) {
        cmd.program = p.iter().cloned().collect();
    } else if let Some(code) = script
        .strip_prefix("exit /b ")
        .or_else(|| script.strip_prefix("exit "))
        .and_then(|c| c.trim().parse::<u32>().ok())
    {
        cmd.program.push_back(Reply::done(code));
    } else if script == "whoami" {
        cmd.program
            .push_back(Reply::finish("acme\\administrator\r\n", "", 0));
    } else if let Some(text) = script.strip_prefix("echo ") {
        // As cmd.exe does: `%NAME%` is the variable's value when it is set.
        let mut shown = text.to_string();
        for (name, value) in env {
            shown = shown.replace(&format!("%{name}%"), value);
        }
        cmd.program
            .push_back(Reply::finish(&format!("{shown}\r\n"), "", 0));
    } else {
        let first = script.split_whitespace().next().unwrap_or_default();
        cmd.program.push_back(Reply::finish(
            "",
            &format!("'{first}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"),
            1,
        ));
    }
    cmd
}
