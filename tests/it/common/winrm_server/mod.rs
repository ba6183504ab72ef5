//! A WinRM server for tests, on loopback: HTTP/1.1 (optionally TLS) with Basic
//! authentication, speaking the WinRS cmd shell the way Windows does (MS-WSMV).
//!
//! It is not Windows: commands "run" from a table the test fills in (`program`), plus a few
//! built-ins (`echo`, `echo %TEMP%`, `del`, the upload and read scripts, temporary script
//! files). What it does copy from Windows: faults as HTTP 500 with SOAP fault bodies,
//! `w:TimedOut` when a command has nothing to say, ShellIds with and without `uuid:`, several
//! namespace prefix styles and empty-stream shapes, output split across Receives, and 401 for
//! wrong credentials.
//!
//! The parts: `http` (connections, TLS, authentication), `ntlm_server`, `soap` (reading requests,
//! writing envelopes and faults) and `shell` (WinRS and the commands it pretends to run). This
//! file holds the server's state and the API the tests use.
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

mod http;
mod ntlm_server;
mod shell;
mod soap;

use http::{serve, tls_acceptor};
use shell::handle;
use soap::{envelope, fault, quota_fault, stream_xml, Style, STYLES};
pub use soap::{parse_request, Request};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    Stdout,
    Stderr,
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

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn new_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    format!("{pid:08X}-0000-4000-A000-{n:012X}")
}
