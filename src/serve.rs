//! `runner serve`: a read-only web page of one or more cutovers, for whoever watches from afar.
//!
//! Everything shown is read from where `runner status` and `runner report` read it: the
//! playbook, the journal (opened read-only, never locked) and the run folder's output logs.
//! Nothing here knows the engine. One thread follows the journals and logs and publishes a new
//! snapshot when a journal's `data_version` changes (and looks again every few seconds, so that
//! a dead runner's in-doubt pairs show); the page gets, as server-sent events, each cutover
//! whose data changed (only those, only then) and each output line as it is appended.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::clock::Clock;
use crate::engine::runlog::RunLog;
use crate::journal::{self, Journal, JournalError};
use crate::playbook::Playbook;
use crate::report::{self, ReportFormat};
use crate::status::{self, StatusView};

/// How often the follower looks at the journals and logs.
const TICK: Duration = Duration::from_millis(250);
/// Everything is computed again this often even when no journal changed (a runner that died
/// changes nothing in its journal); it is sent only if it differs.
const REFRESH: Duration = Duration::from_secs(5);
/// Output lines kept per pair for a page that connects (the live tail).
const TAIL_LINES: usize = 30;
/// A longer line is cut: the page is a tail, the log file keeps everything.
const MAX_LINE: usize = 500;
/// At most this much of an existing log is read when the follower first sees it.
const FIRST_READ: u64 = 64 * 1024;
/// Cookie that carries the token after a `?token=` link.
const COOKIE: &str = "runner_token";

const PAGE: &str = include_str!("serve/page.html");

/// One cutover to show.
#[derive(Debug, Clone)]
pub struct Cutover {
    pub playbook: Playbook,
    /// Its journal.
    pub state: PathBuf,
    /// Its run folders (`.runner/runs`).
    pub runs_dir: PathBuf,
}

#[derive(Debug)]
pub struct ServeOptions {
    pub cutovers: Vec<Cutover>,
    pub listen: SocketAddr,
    /// Required from every client when set.
    pub token: Option<String>,
    pub clock: Clock,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the web server: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot start the journal follower: {0}")]
    Follower(#[source] std::io::Error),
}

/// `--listen` text to one address: `IP:PORT` or `HOST:PORT`.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or_else(|| format!("{text:?} resolves to no address")),
        Err(e) => Err(format!(
            "{text:?} is not an address to listen on (for example 127.0.0.1:8080 or 0.0.0.0:8080): {e}"
        )),
    }
}

/// A fresh random token (128 bits, hex).
pub fn generate_token() -> Result<String, openssl::error::ErrorStack> {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Token comparison whose time does not depend on where the texts differ.
fn token_matches(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && openssl::memcmp::eq(given.as_bytes(), expected.as_bytes())
}

/// What the page shows of one cutover; `status` is exactly `runner status --format json`.
#[derive(Debug, Clone, Serialize)]
pub struct PageCutover {
    pub status: Option<StatusView>,
    /// The journal could not be read (shown on the page instead of the status).
    pub error: Option<String>,
    /// What is left, placed against the business hours from now.
    pub schedule: Option<Schedule>,
    /// Window events (overrides, stops, waits, overruns) in the order recorded.
    pub events: Vec<WindowEvent>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    pub steps: Vec<ScheduledStep>,
    pub nights: Vec<ScheduledNight>,
    /// Expected end of everything left.
    pub finish: String,
    /// Why what is left cannot be placed, when it cannot.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduledStep {
    pub id: String,
    pub name: String,
    pub start: String,
    pub end: String,
    pub night: usize,
    pub estimate_secs: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduledNight {
    pub title: String,
    pub daytime: bool,
    pub finish: String,
    /// When business hours (minus the margin) begin; None without a limit.
    pub closes: Option<String>,
    /// Expected to end before `closes`.
    pub fits: bool,
    /// Minutes between the expected end and `closes`.
    pub margin_minutes: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowEvent {
    pub at: Timestamp,
    pub kind: String,
    pub step: Option<String>,
    pub detail: String,
}

/// Per cutover, its page data as JSON; an entry is replaced (a new `Arc`) only when it changed.
type Snapshot = Arc<Vec<Arc<String>>>;

/// Shared by the handlers.
struct App {
    cutovers: Vec<Cutover>,
    token: Option<String>,
    clock: Clock,
    host: String,
    /// The latest data of every cutover, each as the page's JSON.
    snapshot: watch::Receiver<Snapshot>,
    tails: Arc<Mutex<Tails>>,
    lines: broadcast::Sender<Arc<String>>,
}

/// Reads one cutover's status as `runner status` does, from a read-only journal.
fn read_status(c: &Cutover, clock: &Clock, host: &str) -> Result<StatusView, JournalError> {
    let journal = Journal::open_read_only(&c.state)?;
    status_of(c, journal.as_ref(), clock, host)
}

fn status_of(
    c: &Cutover,
    journal: Option<&Journal>,
    clock: &Clock,
    host: &str,
) -> Result<StatusView, JournalError> {
    let holder = journal::lock::read_holder_of(&c.state);
    let mut view = status::status(&c.playbook, journal, clock.now(), host, holder.as_ref())?;
    view.now_simulated = clock.is_shifted();
    Ok(view)
}

fn page_cutover(c: &Cutover, journal: Option<&Journal>, clock: &Clock, host: &str) -> PageCutover {
    let view = match status_of(c, journal, clock, host) {
        Ok(v) => v,
        Err(e) => {
            return PageCutover {
                status: None,
                error: Some(e.to_string()),
                schedule: None,
                events: Vec::new(),
            }
        }
    };
    let events = journal
        .and_then(|j| j.events(None).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|e| WindowEvent {
            at: e.at,
            kind: e.kind.as_str().to_owned(),
            step: e.step_id,
            detail: e.detail,
        })
        .collect();
    PageCutover {
        schedule: schedule_left(&c.playbook, &view),
        status: Some(view),
        error: None,
        events,
    }
}

/// The page data without what changes with the clock alone: "now", and the next step's
/// earliest start when that is now. Two readings equal in this are the same news.
fn still(p: &PageCutover) -> PageCutover {
    let mut p = p.clone();
    if let Some(s) = p.status.as_mut() {
        s.now = Timestamp::UNIX_EPOCH;
        if let Some(n) = s.next.as_mut().filter(|n| n.now) {
            n.earliest = None;
        }
    }
    p
}

/// Places the steps not done yet against the business hours, from the view's "now" (to the
/// minute, so that the schedule does not change with every reading).
fn schedule_left(pb: &Playbook, view: &StatusView) -> Option<Schedule> {
    let mut left = pb.clone();
    left.steps.retain(|s| {
        view.steps
            .iter()
            .find(|v| v.id == s.id)
            .is_none_or(|v| v.pairs.iter().any(|p| !p.status.is_done()))
    });
    if left.steps.is_empty() {
        return None;
    }
    let from = view
        .now
        .round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Minute)
                .mode(jiff::RoundMode::Trunc),
        )
        .unwrap_or(view.now);
    let plan = match crate::plan::build(&left, from) {
        Ok(p) => p,
        Err(e) => {
            return Some(Schedule {
                steps: Vec::new(),
                nights: Vec::new(),
                finish: String::new(),
                problem: Some(e.to_string()),
            })
        }
    };
    Some(Schedule {
        steps: plan
            .steps
            .iter()
            .map(|s| ScheduledStep {
                id: s.id.clone(),
                name: s.name.clone(),
                start: s.start_text.clone(),
                end: s.end_text.clone(),
                night: s.night,
                estimate_secs: s.estimate_secs,
            })
            .collect(),
        nights: plan
            .nights
            .iter()
            .map(|n| ScheduledNight {
                title: n.title.clone(),
                daytime: n.daytime,
                finish: n.finish_text.clone(),
                closes: n.closes_text.clone(),
                fits: n.closes.is_none_or(|c| n.finish <= c),
                margin_minutes: n.closes.map(|c| c.duration_since(n.finish).as_secs() / 60),
            })
            .collect(),
        finish: plan.finish_text.clone(),
        problem: None,
    })
}

/// The last lines of each pair's output in each cutover's latest run.
#[derive(Default)]
struct Tails {
    /// Per cutover: the run being followed and its pairs' tails, keyed by log file name.
    cutovers: Vec<RunTail>,
}

#[derive(Default)]
struct RunTail {
    run: Option<String>,
    files: BTreeMap<String, FileTail>,
}

#[derive(Default)]
struct FileTail {
    step: String,
    target: String,
    offset: u64,
    partial: Vec<u8>,
    lines: VecDeque<String>,
}

#[derive(Serialize)]
struct OutputLine<'a> {
    cutover: usize,
    step: &'a str,
    target: &'a str,
    line: &'a str,
}

#[derive(Serialize)]
struct TailSnapshot<'a> {
    cutover: usize,
    run: Option<&'a str>,
    step: &'a str,
    target: &'a str,
    lines: &'a VecDeque<String>,
}

impl Tails {
    /// Every tail as JSON, for a page that connects.
    fn snapshot(&self) -> String {
        let mut all = Vec::new();
        for (i, c) in self.cutovers.iter().enumerate() {
            for f in c.files.values() {
                all.push(TailSnapshot {
                    cutover: i,
                    run: c.run.as_deref(),
                    step: &f.step,
                    target: &f.target,
                    lines: &f.lines,
                });
            }
        }
        serde_json::to_string(&all).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// Which step and target a log file belongs to.
fn pair_of_log(pb: &Playbook, name: &str) -> Option<(String, String)> {
    for step in &pb.steps {
        for t in &step.targets {
            if RunLog::output_name(&step.id, t) == name {
                return Some((step.id.clone(), t.clone()));
            }
        }
    }
    let stem = name.strip_suffix(".log")?;
    let (s, t) = stem.split_once('@')?;
    Some((s.to_owned(), t.to_owned()))
}

/// Reads what was appended to `path` since `tail.offset`; returns the new complete lines.
fn read_new_lines(path: &Path, tail: &mut FileTail) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len < tail.offset {
        // Replaced or truncated: start over.
        tail.offset = 0;
        tail.partial.clear();
    }
    if len == tail.offset {
        return Vec::new();
    }
    let mut skip_first = false;
    if tail.offset == 0 && len > FIRST_READ {
        tail.offset = len - FIRST_READ;
        skip_first = true;
    }
    if f.seek(SeekFrom::Start(tail.offset)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if f.take(len - tail.offset).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    tail.offset += buf.len() as u64;
    tail.partial.extend_from_slice(&buf);
    let mut out = Vec::new();
    while let Some(nl) = tail.partial.iter().position(|&b| b == b'\n') {
        let raw: Vec<u8> = tail.partial.drain(..=nl).collect();
        if skip_first {
            // Started in the middle of a line.
            skip_first = false;
            continue;
        }
        let mut line = String::from_utf8_lossy(&raw[..raw.len() - 1]).into_owned();
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        out.push(line);
    }
    out
}

/// The follower: one thread for all cutovers and all pages.
struct Follower {
    cutovers: Vec<Cutover>,
    clock: Clock,
    host: String,
    journals: Vec<Option<Journal>>,
    versions: Vec<Option<i64>>,
    lock_stamps: Vec<Option<std::time::SystemTime>>,
    inodes: Vec<Option<u64>>,
    snapshot: watch::Sender<Snapshot>,
    /// What each cutover's data was last published as, without the times that move by
    /// themselves, and the JSON published then.
    published: Vec<Option<(String, Arc<String>)>>,
    tails: Arc<Mutex<Tails>>,
    lines: broadcast::Sender<Arc<String>>,
}

impl Follower {
    fn run(mut self) {
        let mut last_refresh: Option<Instant> = None;
        loop {
            let changed = self.poll_journals();
            if changed || last_refresh.is_none_or(|t| t.elapsed() >= REFRESH) {
                last_refresh = Some(Instant::now());
                self.publish();
            }
            self.follow_logs();
            if self.snapshot.is_closed() {
                return;
            }
            std::thread::sleep(TICK);
        }
    }

    /// Opens journals that appeared and tells whether any changed since the last look.
    fn poll_journals(&mut self) -> bool {
        let mut changed = false;
        for i in 0..self.cutovers.len() {
            // A journal deleted or replaced (a fresh start) is read anew.
            let inode = std::fs::metadata(&self.cutovers[i].state)
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
            if inode != self.inodes[i] {
                self.inodes[i] = inode;
                self.journals[i] = None;
                changed = true;
            }
            if self.journals[i].is_none() {
                match Journal::open_read_only(&self.cutovers[i].state) {
                    Ok(Some(j)) => {
                        self.journals[i] = Some(j);
                        changed = true;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!("{}: {e}", self.cutovers[i].state.display()),
                }
            }
            let version = self.journals[i]
                .as_ref()
                .and_then(|j| j.data_version().ok());
            if version != self.versions[i] {
                self.versions[i] = version;
                changed = true;
            }
            let lock = journal::lock::lock_path(&self.cutovers[i].state);
            let stamp = std::fs::metadata(lock).and_then(|m| m.modified()).ok();
            if stamp != self.lock_stamps[i] {
                self.lock_stamps[i] = stamp;
                changed = true;
            }
        }
        changed
    }

    fn publish(&mut self) {
        let page: Vec<PageCutover> = self
            .cutovers
            .iter()
            .zip(&self.journals)
            .map(|(c, j)| page_cutover(c, j.as_ref(), &self.clock, &self.host))
            .collect();
        // Follow the latest run's output.
        if let Ok(mut tails) = self.tails.lock() {
            for (i, p) in page.iter().enumerate() {
                let run = p
                    .status
                    .as_ref()
                    .and_then(|s| s.last_run.as_ref())
                    .map(|r| r.id.clone());
                if tails.cutovers[i].run != run {
                    tails.cutovers[i] = RunTail {
                        run,
                        files: BTreeMap::new(),
                    };
                    let _ = self.lines.send(Arc::new(String::from("reset")));
                }
            }
        }
        let mut changed = false;
        for (i, p) in page.iter().enumerate() {
            let (Ok(json), Ok(sig)) = (serde_json::to_string(p), serde_json::to_string(&still(p)))
            else {
                tracing::warn!("cannot serialize the page data");
                continue;
            };
            if self.published[i]
                .as_ref()
                .is_none_or(|(old, _)| *old != sig)
            {
                self.published[i] = Some((sig, Arc::new(json)));
                changed = true;
            }
        }
        if changed {
            let all = self
                .published
                .iter()
                .map(|p| {
                    p.as_ref()
                        .map_or_else(|| Arc::new(String::from("null")), |(_, j)| j.clone())
                })
                .collect();
            let _ = self.snapshot.send(Arc::new(all));
        }
    }

    fn follow_logs(&mut self) {
        let Ok(mut tails) = self.tails.lock() else {
            return;
        };
        for (i, c) in self.cutovers.iter().enumerate() {
            let tail = &mut tails.cutovers[i];
            let Some(run) = tail.run.clone() else {
                continue;
            };
            let dir = crate::paths::run_folder(&c.runs_dir, &run);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.ends_with(".log") {
                    continue;
                }
                if !tail.files.contains_key(&name) {
                    let Some((step, target)) = pair_of_log(&c.playbook, &name) else {
                        continue;
                    };
                    tail.files.insert(
                        name.clone(),
                        FileTail {
                            step,
                            target,
                            ..FileTail::default()
                        },
                    );
                }
                let Some(ft) = tail.files.get_mut(&name) else {
                    continue;
                };
                // Most logs did not grow since the last look: a stat, not an open.
                if entry.metadata().is_ok_and(|m| m.len() == ft.offset) {
                    continue;
                }
                for line in read_new_lines(&entry.path(), ft) {
                    let msg = OutputLine {
                        cutover: i,
                        step: &ft.step,
                        target: &ft.target,
                        line: &line,
                    };
                    if let Ok(json) = serde_json::to_string(&msg) {
                        let _ = self.lines.send(Arc::new(json));
                    }
                    ft.lines.push_back(line);
                    while ft.lines.len() > TAIL_LINES {
                        ft.lines.pop_front();
                    }
                }
            }
        }
    }
}

/// Serves until the process is stopped. Prints the address it listens on (and a generated
/// token's link) on stdout once it is listening.
pub fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    let host = journal::lock::host_name().unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(ServeError::Runtime)?;
    let (snap_tx, snap_rx) = watch::channel(Arc::new(Vec::new()));
    let (lines_tx, _) = broadcast::channel(1024);
    let tails = Arc::new(Mutex::new(Tails {
        cutovers: opts.cutovers.iter().map(|_| RunTail::default()).collect(),
    }));
    let follower = Follower {
        cutovers: opts.cutovers.clone(),
        clock: opts.clock,
        host: host.clone(),
        journals: opts.cutovers.iter().map(|_| None).collect(),
        versions: opts.cutovers.iter().map(|_| None).collect(),
        lock_stamps: opts.cutovers.iter().map(|_| None).collect(),
        inodes: opts.cutovers.iter().map(|_| None).collect(),
        snapshot: snap_tx,
        published: opts.cutovers.iter().map(|_| None).collect(),
        tails: tails.clone(),
        lines: lines_tx.clone(),
    };
    std::thread::Builder::new()
        .name("serve-follower".into())
        .spawn(move || follower.run())
        .map_err(ServeError::Follower)?;
    let app = Arc::new(App {
        cutovers: opts.cutovers,
        token: opts.token,
        clock: opts.clock,
        host,
        snapshot: snap_rx,
        tails,
        lines: lines_tx,
    });
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: opts.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: opts.listen,
            source,
        })?;
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "serving on http://{addr}/");
            let _ = out.flush();
        }
        axum::serve(listener, router(app))
            .await
            .map_err(ServeError::Runtime)
    })
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/status", get(api_status))
        .route("/api/status/{which}", get(api_status_one))
        .route("/api/page", get(api_page))
        .route("/report/{which}", get(report_page))
        .route("/events", get(events))
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .with_state(app)
}

fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The page's one inline script and style, the stream and the JSON from here; nothing else.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// Lets a request through when no token is required or it carries the token; a `?token=`
/// link sets an HttpOnly cookie and redirects to the same page without the token.
async fn auth(
    State(app): State<Arc<App>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let Some(expected) = app.token.as_deref() else {
        // Without a token only loopback listens; a page elsewhere must not reach it through a
        // name it points at 127.0.0.1 (DNS rebinding): only address and localhost names pass.
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        if !host.is_some_and(is_local_host) {
            return security_headers(
                (
                    StatusCode::FORBIDDEN,
                    "without a token this server answers only to localhost and IP addresses\n",
                )
                    .into_response(),
            );
        }
        return security_headers(next.run(req).await);
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v);
    if bearer.is_some_and(|t| token_matches(t, expected))
        || cookie.is_some_and(|t| token_matches(t, expected))
    {
        return security_headers(next.run(req).await);
    }
    if let Some(t) = query.get("token") {
        if token_matches(t, expected) {
            let path = req.uri().path().to_owned();
            let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, path)]).into_response();
            // Behind a TLS proxy the cookie is sent over TLS only.
            let secure = headers
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{COOKIE}={expected}; HttpOnly; SameSite=Strict; Path=/{}",
                if secure { "; Secure" } else { "" }
            )) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            return security_headers(r);
        }
    }
    security_headers(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a token is required: open the link runner serve printed, or send Authorization: Bearer <token>\n",
        )
            .into_response(),
    )
}

/// A Host header naming this machine by address or as localhost.
fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body + "\n",
    )
        .into_response()
}

fn error_json(status: StatusCode, message: &str) -> Response {
    json_response(status, serde_json::json!({ "error": message }).to_string())
}

/// Runs blocking journal reads off the server's thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// Every cutover's status, as `runner status --format json` prints each.
async fn api_status(State(app): State<Arc<App>>) -> Response {
    let read = blocking(move || {
        app.cutovers
            .iter()
            .map(|c| read_status(c, &app.clock, &app.host))
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    match read {
        Some(Ok(views)) => match serde_json::to_string_pretty(&views) {
            Ok(s) => json_response(StatusCode::OK, s),
            Err(e) => error_json(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        Some(Err(e)) => error_json(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        None => error_json(StatusCode::INTERNAL_SERVER_ERROR, "the reader stopped"),
    }
}

/// A cutover by 1-based position, playbook name or file stem.
fn find(app: &App, which: &str) -> Option<usize> {
    if let Ok(n) = which.parse::<usize>() {
        return (1..=app.cutovers.len()).contains(&n).then(|| n - 1);
    }
    app.cutovers.iter().position(|c| {
        c.playbook.name == which || c.playbook.path.file_stem().is_some_and(|s| s == which)
    })
}

async fn api_status_one(State(app): State<Arc<App>>, UrlPath(which): UrlPath<String>) -> Response {
    let Some(i) = find(&app, &which) else {
        return error_json(
            StatusCode::NOT_FOUND,
            &format!("no cutover {which:?}: use its position from 1, its name or its file name"),
        );
    };
    match blocking(move || read_status(&app.cutovers[i], &app.clock, &app.host)).await {
        Some(Ok(view)) => match serde_json::to_string_pretty(&view) {
            Ok(s) => json_response(StatusCode::OK, s),
            Err(e) => error_json(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        Some(Err(e)) => error_json(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        None => error_json(StatusCode::INTERNAL_SERVER_ERROR, "the reader stopped"),
    }
}

/// What the page shows (status, schedule, window events), as last published.
async fn api_page(State(app): State<Arc<App>>) -> Response {
    let snap = app.snapshot.borrow().clone();
    let parts: Vec<&str> = snap.iter().map(|j| j.as_str()).collect();
    json_response(StatusCode::OK, format!("[{}]", parts.join(",")))
}

async fn report_page(State(app): State<Arc<App>>, UrlPath(which): UrlPath<String>) -> Response {
    let Some(i) = find(&app, &which) else {
        return (StatusCode::NOT_FOUND, format!("no cutover {which:?}\n")).into_response();
    };
    let read = blocking(move || {
        let c = &app.cutovers[i];
        match Journal::open_read_only(&c.state) {
            Ok(Some(j)) => report::report(&c.playbook, &j, &c.runs_dir, ReportFormat::Html)
                .map_err(|e| e.to_string()),
            Ok(None) => Err(format!(
                "no journal at {}: the playbook has not been applied yet",
                c.state.display()
            )),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    match read {
        Some(Ok(html)) => Html(html).into_response(),
        Some(Err(e)) => (StatusCode::NOT_FOUND, e + "\n").into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "the reader stopped\n").into_response(),
    }
}

/// The live stream: a `cutover` event with one cutover's page data whenever it changed (each
/// at connect), `tails` with every pair's last lines (at connect and after a gap), `output`
/// with each new line.
async fn events(State(app): State<Arc<App>>) -> impl IntoResponse {
    let snapshot = app.snapshot.clone();
    let (lines, tails) = match app.tails.lock() {
        // Subscribing under the lock: no line is both in the snapshot and sent again.
        Ok(t) => (app.lines.subscribe(), t.snapshot()),
        Err(_) => (app.lines.subscribe(), String::from("[]")),
    };
    let mut state = Stream {
        app,
        snapshot,
        lines,
        pending: VecDeque::new(),
        sent: Vec::new(),
    };
    state.queue_changed();
    state
        .pending
        .push_back(SseEvent::default().event("tails").data(tails));
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        let ev = s.next().await?;
        Some((Ok::<_, std::convert::Infallible>(ev), s))
    });
    (
        // A reverse proxy must pass the stream on as it comes, not buffer it.
        [("x-accel-buffering", "no")],
        Sse::new(stream).keep_alive(KeepAlive::default()),
    )
}

struct Stream {
    app: Arc<App>,
    snapshot: watch::Receiver<Snapshot>,
    lines: broadcast::Receiver<Arc<String>>,
    pending: VecDeque<SseEvent>,
    /// What this page was sent of each cutover.
    sent: Vec<Arc<String>>,
}

impl Stream {
    async fn next(&mut self) -> Option<SseEvent> {
        if let Some(e) = self.pending.pop_front() {
            return Some(e);
        }
        tokio::select! {
            changed = self.snapshot.changed() => {
                changed.ok()?;
                self.queue_changed();
                // Nothing this page has not seen: a keep-alive comment, the stream goes on.
                Some(self.pending.pop_front().unwrap_or_else(|| SseEvent::default().comment("")))
            }
            line = self.lines.recv() => match line {
                Ok(l) if l.as_str() == "reset" => Some(self.resync()),
                Ok(l) => Some(SseEvent::default().event("output").data(l.as_str())),
                // Too slow a reader: send the tails again rather than a gap.
                Err(broadcast::error::RecvError::Lagged(_)) => Some(self.resync()),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        }
    }

    /// Queues the cutovers whose data differs from what this page was sent.
    fn queue_changed(&mut self) {
        let snap = self.snapshot.borrow_and_update().clone();
        for (i, json) in snap.iter().enumerate() {
            if self.sent.get(i).is_some_and(|s| Arc::ptr_eq(s, json)) {
                continue;
            }
            if i < self.sent.len() {
                self.sent[i] = json.clone();
            } else {
                self.sent.push(json.clone());
            }
            self.pending.push_back(
                SseEvent::default()
                    .event("cutover")
                    .data(format!("{{\"cutover\":{i},\"data\":{json}}}")),
            );
        }
    }

    fn resync(&mut self) -> SseEvent {
        let data = match self.app.tails.lock() {
            Ok(t) => {
                self.lines = self.app.lines.subscribe();
                t.snapshot()
            }
            Err(_) => String::from("[]"),
        };
        SseEvent::default().event("tails").data(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_line_written_in_two_pieces_is_shown_once_complete() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s@t.log");
        let mut f = std::fs::File::create(&path).expect("create");
        let mut tail = FileTail::default();
        write!(f, "one\ntw").expect("write");
        assert_eq!(read_new_lines(&path, &mut tail), ["one"]);
        assert!(read_new_lines(&path, &mut tail).is_empty());
        write!(f, "o\nthree\n").expect("write");
        assert_eq!(read_new_lines(&path, &mut tail), ["two", "three"]);
    }

    #[test]
    fn a_long_log_is_read_from_its_end_starting_at_a_whole_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s@t.log");
        let line = "x".repeat(99);
        let text: String = (0..2000).map(|i| format!("{i:05} {line}\n")).collect();
        std::fs::write(&path, &text).expect("write");
        let mut tail = FileTail::default();
        let lines = read_new_lines(&path, &mut tail);
        assert!(lines.len() < 2000 && !lines.is_empty());
        assert_eq!(
            lines.last().map(String::as_str),
            Some(&*format!("01999 {line}"))
        );
        assert!(
            lines.iter().all(|l| l.len() == 6 + line.len()),
            "no cut line"
        );
    }

    #[test]
    fn a_truncated_log_is_read_again_from_the_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s@t.log");
        std::fs::write(&path, "first run line\n").expect("write");
        let mut tail = FileTail::default();
        assert_eq!(read_new_lines(&path, &mut tail), ["first run line"]);
        std::fs::write(&path, "new\n").expect("write");
        assert_eq!(read_new_lines(&path, &mut tail), ["new"]);
    }

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(token_matches("abc123", "abc123"));
        assert!(!token_matches("abc124", "abc123"));
        assert!(!token_matches("abc12", "abc123"));
        assert!(!token_matches("", "abc123"));
        let t = generate_token().expect("random bytes");
        assert_eq!(t.len(), 32);
        assert_ne!(t, generate_token().expect("random bytes"));
    }

    #[test]
    fn only_addresses_and_localhost_are_local_host_names() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:1",
            "LOCALHOST",
            "[::1]:80",
            "10.0.0.5:80",
        ] {
            assert!(is_local_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "evil.example",
            "127.0.0.1.nip.io:80",
            "",
        ] {
            assert!(!is_local_host(bad), "{bad}");
        }
    }

    #[test]
    fn listen_addresses() {
        assert!(parse_listen("127.0.0.1:8080").is_ok_and(|a| a.ip().is_loopback()));
        assert!(parse_listen("[::1]:0").is_ok_and(|a| a.ip().is_loopback()));
        assert!(parse_listen("0.0.0.0:80").is_ok_and(|a| !a.ip().is_loopback()));
        assert!(parse_listen("8080").is_err());
        assert!(parse_listen("not an address").is_err());
    }
}
