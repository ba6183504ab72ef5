//! Ctrl-C (and SIGTERM), handled in two stages: the first stops starting new work and lets
//! running commands finish; the second stops running commands (they are recorded as
//! interrupted). Waits in the engine (retry delays, the window) end at once on either. The
//! caller ends the process on a third (the journal keeps what was in flight as in doubt).
//! SIGHUP is not an interrupt: a closed terminal only ends the output to it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A signal the runner listens to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: Ctrl-C.
    Interrupt,
    /// SIGTERM: a polite stop, as one Ctrl-C.
    Terminate,
    /// SIGHUP: the terminal went away; the run goes on without it.
    HangUp,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "Ctrl-C (SIGINT)",
            Signal::Terminate => "SIGTERM",
            Signal::HangUp => "SIGHUP",
        }
    }
}

#[derive(Clone, Default)]
pub struct Interrupt {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    count: AtomicUsize,
    /// Shared with every running command's `Control`.
    cancel: Arc<AtomicBool>,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Interrupt {
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// Installs handlers for SIGINT, SIGTERM and SIGHUP. SIGINT and SIGTERM feed this
    /// interrupt; SIGHUP (the terminal went away) does not stop anything. `notify` is told of
    /// each signal (from the signal thread) with the number of interrupts so far, so the user
    /// sees that it was heard and the output can leave a terminal that is gone.
    pub fn install(&self, notify: impl Fn(Signal, usize) + Send + 'static) -> std::io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let me = self.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    let which = match sig {
                        SIGHUP => {
                            notify(Signal::HangUp, me.inner.count.load(Ordering::SeqCst));
                            continue;
                        }
                        SIGTERM => Signal::Terminate,
                        _ => Signal::Interrupt,
                    };
                    let n = me.trigger();
                    notify(which, n);
                }
            })?;
        Ok(())
    }

    /// Records one interrupt; returns how many there have been.
    pub fn trigger(&self) -> usize {
        let n = self.inner.count.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= 2 {
            self.inner.cancel.store(true, Ordering::SeqCst);
        }
        let _guard = self.inner.lock.lock();
        self.inner.wake.notify_all();
        n
    }

    /// True after the first interrupt: start nothing new.
    pub fn stopping(&self) -> bool {
        self.inner.count.load(Ordering::SeqCst) > 0
    }

    /// The flag running commands watch; set on the second interrupt.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.inner.cancel.clone()
    }

    /// Sleeps up to `d`; returns false if interrupted meanwhile.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = std::time::Instant::now() + d;
        let Ok(mut guard) = self.inner.lock.lock() else {
            return !self.stopping();
        };
        loop {
            if self.stopping() {
                return false;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return true;
            }
            match self.inner.wake.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => guard = g,
                Err(_) => return !self.stopping(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_interrupt_stops_new_work_second_cancels_commands() {
        let i = Interrupt::new();
        assert!(!i.stopping());
        i.trigger();
        assert!(i.stopping());
        assert!(!i.cancel_flag().load(Ordering::SeqCst));
        i.trigger();
        assert!(i.cancel_flag().load(Ordering::SeqCst));
        // A sleep after an interrupt returns at once with false.
        assert!(!i.sleep(Duration::from_secs(3600)));
    }

    #[test]
    fn sleep_is_woken_by_an_interrupt_from_another_thread() {
        let i = Interrupt::new();
        let j = i.clone();
        let t = std::thread::spawn(move || j.sleep(Duration::from_secs(3600)));
        // Whether the trigger lands before or during the sleep, the sleep must end with false.
        i.trigger();
        assert!(!t.join().unwrap());
    }
}
