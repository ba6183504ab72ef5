//! The limits a file transfer (an upload, copy or fetch step) keeps, as a command does: the
//! step's `timeout`, counted from the start of the transfer, and the second Ctrl-C. The
//! transports consult them between blocks (an upload's pace, a download's sink); a transfer
//! they stop ends as a command would: timed out, or interrupted.

use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::transport::{CommandExit, Control, Halt, TransportError};

/// When a transfer must stop.
pub(super) struct TransferLimit {
    cancel: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl TransferLimit {
    /// Limits starting now: `timeout` from now, and the run's cancel flag.
    pub(super) fn new(timeout: Option<Duration>, cancel: Arc<AtomicBool>) -> TransferLimit {
        TransferLimit {
            cancel,
            deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
        }
    }

    /// `Err` once the transfer must stop; the operator's interrupt first.
    pub(super) fn check(&self) -> Result<(), Halt> {
        if self.cancel.load(Ordering::SeqCst) {
            Err(Halt::Cancelled)
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Err(Halt::TimedOut)
        } else {
            Ok(())
        }
    }

    /// The limits as a command's, for what a transport runs as part of the transfer (the
    /// target hashing the file it is about to send): the time left, and the cancel flag.
    pub(super) fn control(&self) -> Control {
        let mut ctl = Control::new(
            self.deadline
                .map(|d| d.saturating_duration_since(Instant::now())),
        );
        ctl.cancel = self.cancel.clone();
        ctl
    }

    /// A file that refuses more bytes once the transfer must stop.
    pub(super) fn sink<'a>(&'a self, file: &'a mut File) -> Limited<'a> {
        Limited { file, limit: self }
    }

    /// Why a transfer that failed with `e` ended: stopped by these limits, or not.
    pub(super) fn halt_of(&self, e: &TransportError) -> Option<Halt> {
        match e {
            TransportError::Halted { halt, .. } => Some(*halt),
            // A lost link stays a lost link (the destination may be replaced or not).
            _ if e.is_connection_lost() => None,
            // A transport that reports the refused bytes otherwise: the limit still decides.
            _ => self.check().err(),
        }
    }
}

/// How a stopped transfer ends, as a command's exit.
pub(super) fn exit_of(halt: Halt) -> CommandExit {
    match halt {
        Halt::TimedOut => CommandExit::TimedOut,
        Halt::Cancelled => CommandExit::Cancelled,
    }
}

/// See [`TransferLimit::sink`].
pub(super) struct Limited<'a> {
    file: &'a mut File,
    limit: &'a TransferLimit,
}

impl Write for Limited<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.limit.check().map_err(Halt::error)?;
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_sink_refuses_bytes_with_the_halt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = File::create(dir.path().join("f")).expect("create");
        let limit = TransferLimit::new(None, Arc::new(AtomicBool::new(false)));
        let mut sink = limit.sink(&mut file);
        sink.write_all(b"ab").expect("write");
        limit.cancel.store(true, Ordering::SeqCst);
        let e = sink.write_all(b"cd").expect_err("refused");
        assert_eq!(Halt::of(&e), Some(Halt::Cancelled));
    }

    #[test]
    fn a_spent_timeout_stops_and_the_interrupt_comes_first() {
        let cancel = Arc::new(AtomicBool::new(false));
        let limit = TransferLimit::new(Some(Duration::ZERO), cancel.clone());
        assert_eq!(limit.check(), Err(Halt::TimedOut));
        cancel.store(true, Ordering::SeqCst);
        assert_eq!(limit.check(), Err(Halt::Cancelled));
        let open = TransferLimit::new(None, Arc::new(AtomicBool::new(false)));
        assert_eq!(open.check(), Ok(()));
    }

    #[test]
    fn a_lost_link_after_the_timeout_stays_a_lost_link() {
        let spent = TransferLimit::new(Some(Duration::ZERO), Arc::new(AtomicBool::new(false)));
        let lost = TransportError::ConnectionLost {
            target: "t".into(),
            during: "uploading".into(),
            cause: "reset".into(),
        };
        assert_eq!(spent.halt_of(&lost), None);
        let other = TransportError::Io {
            context: "cannot write".into(),
            source: io::Error::other("refused"),
        };
        assert_eq!(spent.halt_of(&other), Some(Halt::TimedOut));
        let halted = TransportError::Halted {
            target: "t".into(),
            what: "reading a".into(),
            halt: Halt::Cancelled,
        };
        assert_eq!(spent.halt_of(&halted), Some(Halt::Cancelled));
    }
}
