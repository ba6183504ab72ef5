//! The open-file limit of a fan-out: `runner apply` raises its soft limit (RLIMIT_NOFILE) to
//! the hard one at start, and runs no more targets at once than the hard limit allows, saying
//! so once, before the first step, with what to do about it.

/// Files the runner holds whatever the fan-out: standard streams, the journal (and SQLite's
/// write-ahead log and shared memory, or a database socket), its lock, the run log, the
/// playbook's own files. Measured: 55 at most for one local target at a time.
pub const BASE_FILES: u64 = 64;

/// Files one target in flight may hold: its connection (an SSH socket, or a local process's
/// pipes), a jump host's socket, its output log, its journal connection. Measured: about 3
/// for a local target.
pub const FILES_PER_TARGET: u64 = 6;

/// The open-file limit after [`raise`]: the soft limit now in force and the hard one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub soft: u64,
    pub hard: u64,
}

/// Raise the soft open-file limit to the hard limit. Returns the limits in force afterwards,
/// or `None` when they cannot be read (the fan-out is then not capped).
pub fn raise() -> Option<Limit> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return None;
    }
    if rl.rlim_cur < rl.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: rl.rlim_max,
            rlim_max: rl.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own; on failure the old soft limit stays.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            rl.rlim_cur = rl.rlim_max;
        }
    }
    Some(Limit {
        soft: as_u64(rl.rlim_cur),
        hard: as_u64(rl.rlim_max),
    })
}

fn as_u64(v: libc::rlim_t) -> u64 {
    // rlim_t is u64 on Linux; RLIM_INFINITY is its largest value.
    v
}

/// The files a fan-out of `at_once` targets may need.
pub fn needed(at_once: usize) -> u64 {
    BASE_FILES.saturating_add(FILES_PER_TARGET.saturating_mul(at_once as u64))
}

/// How many targets at once a limit of `files` allows (at least one: a step always runs).
pub fn allowed(files: u64) -> usize {
    let n = files.saturating_sub(BASE_FILES) / FILES_PER_TARGET;
    usize::try_from(n).unwrap_or(usize::MAX).max(1)
}

/// The fan-out a run may use: `max_parallel`, capped by the widest step's targets and by the
/// soft limit in force. The second value is what to tell the operator, when the cap applies.
pub fn plan(
    max_parallel: usize,
    widest_step: usize,
    limit: Option<Limit>,
) -> (usize, Option<String>) {
    let wanted = max_parallel.min(widest_step).max(1);
    let Some(limit) = limit else {
        return (max_parallel, None);
    };
    if needed(wanted) <= limit.soft {
        return (max_parallel, None);
    }
    let at_once = allowed(limit.soft);
    let message = format!(
        "the open-file limit ({soft}) is too low for {wanted} targets at once (about {need} files: \
         {BASE_FILES} + {FILES_PER_TARGET} per target); running {at_once} at once. \
         To run them all at once, raise the hard limit (`ulimit -n {need}` as root, or `nofile` in \
         /etc/security/limits.conf), or choose the fan-out with `--max-parallel {at_once}`.",
        soft = limit.soft,
        need = needed(wanted),
    );
    (at_once, Some(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(n: u64) -> Option<Limit> {
        Some(Limit { soft: n, hard: n })
    }

    #[test]
    fn files_needed_grow_with_the_targets_at_once() {
        assert_eq!(needed(0), BASE_FILES);
        assert_eq!(needed(1), BASE_FILES + FILES_PER_TARGET);
        assert_eq!(needed(500), 64 + 6 * 500);
        assert_eq!(needed(usize::MAX), u64::MAX);
    }

    #[test]
    fn a_limit_allows_what_fits_after_the_base_and_never_less_than_one() {
        assert_eq!(allowed(128), 10);
        assert_eq!(allowed(64), 1);
        assert_eq!(allowed(needed(16)), 16);
        assert_eq!(allowed(needed(16) - 1), 15);
        assert_eq!(allowed(0), 1);
        assert_eq!(allowed(BASE_FILES), 1);
    }

    #[test]
    fn a_fan_out_within_the_limit_is_left_alone_and_unsaid() {
        assert_eq!(plan(16, 500, lim(1024)), (16, None));
        assert_eq!(plan(500, 500, lim(needed(500))), (500, None));
        // A step narrower than --max-parallel needs only its own targets.
        assert_eq!(plan(500, 8, lim(needed(8))), (500, None));
        // An unknown limit caps nothing.
        assert_eq!(plan(500, 500, None), (500, None));
    }

    #[test]
    fn a_fan_out_beyond_the_limit_is_capped_and_says_what_to_do() {
        let (at_once, said) = plan(500, 500, lim(1024));
        assert_eq!(at_once, (1024 - 64) / 6);
        let said = said.expect("a message");
        assert!(said.contains("open-file limit (1024)"), "{said}");
        assert!(said.contains("500 targets at once"), "{said}");
        assert!(said.contains("ulimit -n 3064"), "{said}");
        assert!(said.contains("--max-parallel 160"), "{said}");
        // The fan-out it suggests fits.
        assert!(needed(at_once) <= 1024);
        assert!(needed(at_once + 1) > 1024);
    }
}
