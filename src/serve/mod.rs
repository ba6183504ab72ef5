//! `runner serve`: a read-only web page of one or more cutovers, for whoever watches from afar.
//!
//! Everything shown is read from where `runner status` and `runner report` read it: the
//! playbook, the journal (opened read-only, never locked) and the run folder's output logs.
//! Nothing here knows the engine. One thread follows the journals and logs and publishes a new
//! snapshot when a journal's `data_version` changes (and looks again every few seconds, so that
//! a dead runner's in-doubt pairs show); the page gets, as server-sent events, each cutover
//! whose data changed (only those, only then) and each output line as it is appended.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::middleware;
use axum::routing::get;
use axum::Router;
use tokio::sync::{broadcast, watch};

use crate::clock::Clock;
use crate::journal;
use crate::playbook::Playbook;

mod api;
mod auth;
mod events;
mod follower;
mod model;
mod tails;

use api::{api_page, api_status, api_status_one, page, report_page};
use auth::auth;
pub use auth::generate_token;
use events::events;
use follower::Follower;
pub use model::{PageCutover, PageStep, Schedule, ScheduledNight, WindowEvent};
use tails::{RunTail, Tails};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert!(parse_listen("127.0.0.1:8080").is_ok_and(|a| a.ip().is_loopback()));
        assert!(parse_listen("[::1]:0").is_ok_and(|a| a.ip().is_loopback()));
        assert!(parse_listen("0.0.0.0:80").is_ok_and(|a| !a.ip().is_loopback()));
        assert!(parse_listen("8080").is_err());
        assert!(parse_listen("not an address").is_err());
    }
}
