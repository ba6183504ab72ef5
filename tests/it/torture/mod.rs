//! Crash torture: `kill -9` the runner at random moments over three real sshd targets, resume
//! until the playbook is done, and check every promise against the truth on the targets.
//!
//! Long (minutes), so ignored by default; `scripts/torture.sh` runs it. Each round starts from
//! a fresh journal and fresh ledgers. Every step appends lines to a ledger file on its target:
//! the ledger is what really ran, the journal is what runner believes, and they must agree.
//!
//! The kill moments come from a seeded generator: `TORTURE_SEED=<n>` replays a run exactly
//! as far as the runner's own timing allows. `TORTURE_ROUNDS` sets the rounds (default 25;
//! 15 in the mixed mode).
//!
//! The two modes are `kill_nine` and `mixed`; this file holds what both use.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::Sshd;
use runner::journal::{AttemptKind, AttemptState, Journal, PairState};

mod kill_nine;
mod mixed;

/// How a step behaves when it finds itself in doubt after a crash.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// `idempotent: true`: may simply run again.
    Idempotent,
    /// Not idempotent, with a check that tells whether its work is done.
    Checked,
    /// Idempotent and checked.
    Both,
    /// Neither: in doubt, only an operator (this test, reading the ledger) may decide.
    Neither,
}

const STEPS: &[(&str, Kind)] = &[
    ("prep", Kind::Idempotent),
    ("copy", Kind::Checked),
    ("switch", Kind::Neither),
    ("config", Kind::Both),
    ("notify", Kind::Neither),
    ("verify", Kind::Idempotent),
    ("final", Kind::Checked),
    ("close", Kind::Neither),
];

/// More kills per round than this and the round's last apply runs to the end untouched.
const MAX_KILLS_PER_ROUND: u32 = 4;

/// Kill moments are drawn as a fraction of a clean apply's duration, in thousandths, up to
/// this: a little beyond the end, so that a kill sometimes misses.
const KILL_PERMILLE_MAX: u64 = 1100;

/// An apply that is not killed must end within this (generous: the machine may be loaded).
const APPLY_TIMEOUT: Duration = Duration::from_secs(180);

/// xorshift64*: small, deterministic, good enough to spread kill moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn ledger_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `(pid, parent pid, command line)` of every process.
fn processes() -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        if state == "Z" || state == "X" {
            continue;
        }
        let ppid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        out.push((pid, ppid, cmdline));
    }
    out
}
