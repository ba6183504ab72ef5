//! The lease of a cutover: taken, renewed from a thread, released, read by `status`, and the
//! fence every write checks (see the module's documentation).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use postgres::Client;

use super::schema::bootstrap;
use super::PgLocation;
use crate::journal::lock::{Holder, LockError};
use crate::journal::JournalError;

/// How long a lease lasts unless renewed; `RUNNER_PG_LEASE_MS` shortens it for tests.
const LEASE: Duration = Duration::from_secs(60);

/// The lease length in force (`RUNNER_PG_LEASE_MS` for tests).
pub fn lease_length() -> Duration {
    std::env::var("RUNNER_PG_LEASE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms >= 200)
        .map_or(LEASE, Duration::from_millis)
}

/// The leases this process holds: (URL, cutover, fence). Every journal connection this process
/// opens on a held cutover writes under that fence (the notification worker has its own
/// connection), and none of them can write once another runner took the lease over.
static HELD: std::sync::Mutex<Vec<(String, String, i64)>> = std::sync::Mutex::new(Vec::new());

/// The fence this process holds for `loc`, if any.
pub fn held_fence(loc: &PgLocation) -> Option<i64> {
    let held = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    held.iter()
        .find(|(u, c, _)| *u == loc.url && *c == loc.cutover)
        .map(|h| h.2)
}

/// A held lease: renewed by a thread until dropped, then released.
#[derive(Debug)]
pub struct Lease {
    loc: PgLocation,
    fence: i64,
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
    lost: Arc<AtomicBool>,
}

impl Lease {
    pub fn fence(&self) -> i64 {
        self.fence
    }

    pub fn cutover(&self) -> &str {
        &self.loc.cutover
    }

    /// Whether a renewal found the lease taken by another runner.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

fn lock_err(loc: &PgLocation, e: impl std::fmt::Display) -> LockError {
    LockError::Store {
        location: loc.display(),
        message: e.to_string(),
    }
}

fn lock_pg_err(loc: &PgLocation, e: postgres::Error) -> LockError {
    lock_err(loc, crate::journal::pg_text(&e))
}

/// Takes the lease of a cutover, or says who holds it.
pub fn acquire(loc: &PgLocation, holder: &Holder) -> Result<Lease, LockError> {
    let lease = lease_length();
    let ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let text = serde_json::to_string(holder).map_err(|e| lock_err(loc, e))?;
    let mut client = loc.connect().map_err(|e| lock_err(loc, e))?;
    let mut tx = client.transaction().map_err(|e| lock_pg_err(loc, e))?;
    bootstrap(&mut tx).map_err(|e| lock_pg_err(loc, e))?;
    let got = tx
        .query_opt(
            "INSERT INTO runner.leases AS l (cutover, holder, expires_at, fence) \
             VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond', 1) \
             ON CONFLICT (cutover) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at, fence = l.fence + 1 \
             WHERE l.expires_at <= now() RETURNING fence",
            &[&loc.cutover, &text, &ms],
        )
        .map_err(|e| lock_pg_err(loc, e))?;
    let Some(row) = got else {
        let held: Option<String> = tx
            .query_opt(
                "SELECT holder FROM runner.leases WHERE cutover = $1",
                &[&loc.cutover],
            )
            .map_err(|e| lock_pg_err(loc, e))?
            .and_then(|r| r.get(0));
        return Err(LockError::Held {
            path: PathBuf::from(loc.display()),
            holder: held.and_then(|h| serde_json::from_str(&h).ok()),
        });
    };
    let fence: i64 = row.get(0);
    tx.commit().map_err(|e| lock_pg_err(loc, e))?;

    let (stop, stopped) = mpsc::channel::<()>();
    let lost = Arc::new(AtomicBool::new(false));
    let renewer = {
        let at = loc.clone();
        let lost = Arc::clone(&lost);
        std::thread::Builder::new()
            .name("lease".into())
            .spawn(move || renew(&at, fence, ms, lease / 6, &stopped, &lost, client))
            .map_err(|e| lock_err(loc, e))?
    };
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((loc.url.clone(), loc.cutover.clone(), fence));
    Ok(Lease {
        loc: loc.clone(),
        fence,
        stop: Some(stop),
        renewer: Some(renewer),
        lost,
    })
}

fn renew(
    loc: &PgLocation,
    fence: i64,
    ms: i64,
    every: Duration,
    stopped: &mpsc::Receiver<()>,
    lost: &AtomicBool,
    client: Client,
) {
    let mut client = Some(client);
    loop {
        match stopped.recv_timeout(every) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Stop asked, or the lease dropped.
            _ => return,
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            client = loc.connect().ok();
        }
        let Some(c) = client.as_mut() else {
            tracing::warn!("cannot reach {} to renew the lease", loc.display());
            continue;
        };
        match c.execute(
            "UPDATE runner.leases SET expires_at = now() + $3::bigint * interval '1 millisecond' \
             WHERE cutover = $1 AND fence = $2",
            &[&loc.cutover, &fence, &ms],
        ) {
            Ok(1) => {}
            Ok(_) => {
                lost.store(true, Ordering::SeqCst);
                tracing::error!(
                    "another runner took over {}: this run records nothing more",
                    loc.display()
                );
                return;
            }
            Err(e) => {
                tracing::warn!("cannot renew the lease on {}: {e}", loc.display());
                client = None;
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        HELD.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(u, c, f)| {
                !(*u == self.loc.url && *c == self.loc.cutover && *f == self.fence)
            });
        drop(self.stop.take());
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        // Release: expire now, keep the fence (the next holder increments it). A failure only
        // means the lease runs out on its own.
        if let Ok(mut c) = self.loc.connect() {
            let _ = c.execute(
                "UPDATE runner.leases SET expires_at = now(), holder = NULL \
                 WHERE cutover = $1 AND fence = $2",
                &[&self.loc.cutover, &self.fence],
            );
        }
    }
}

/// Who holds a cutover's lease now, if anyone (for `runner status`).
pub fn holder_of(loc: &PgLocation) -> Option<Holder> {
    let mut c = loc.connect().ok()?;
    holder_over(&mut c, loc)
}

/// [`holder_of`] over a connection already open (a reader's).
pub fn holder_over(c: &mut postgres::Client, loc: &PgLocation) -> Option<Holder> {
    let row = c
        .query_opt(
            "SELECT holder FROM runner.leases WHERE cutover = $1 AND expires_at > now()",
            &[&loc.cutover],
        )
        .ok()??;
    let text: Option<String> = row.get(0);
    serde_json::from_str(&text?).ok()
}

/// Checks inside a write transaction that `fence` still holds the cutover's lease.
pub fn check_fence(
    tx: &mut postgres::Transaction<'_>,
    loc: &PgLocation,
    fence: Option<i64>,
) -> Result<(), JournalError> {
    let Some(fence) = fence else {
        return Err(JournalError::NoLease(loc.display()));
    };
    let now: Option<i64> = tx
        .query_opt(
            "SELECT fence FROM runner.leases WHERE cutover = $1 FOR SHARE",
            &[&loc.cutover],
        )?
        .map(|r| r.get(0));
    if now == Some(fence) {
        Ok(())
    } else {
        Err(JournalError::Fenced {
            location: loc.display(),
            ours: fence,
            now,
        })
    }
}
