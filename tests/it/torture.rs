//! Crash torture: `kill -9` the runner at random moments over three real sshd targets, resume
//! until the playbook is done, and check every promise against the truth on the targets.
//!
//! Long (minutes), so ignored by default; `scripts/torture.sh` runs it. Each round starts from
//! a fresh journal and fresh ledgers. Every step appends lines to a ledger file on its target:
//! the ledger is what really ran, the journal is what runner believes, and they must agree.
//!
//! The kill moments come from a seeded generator: `TORTURE_SEED=<n>` replays a run exactly
//! as far as the runner's own timing allows. `TORTURE_ROUNDS` sets the rounds (default 25;
//! 15 in the mixed mode, further down).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::Sshd;
use runner::journal::{AttemptKind, AttemptState, Journal, PairState};

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
const TARGETS: &[&str] = &["t1", "t2", "t3"];
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

/// The command of a step: a start line, a short pause (so that kills land inside commands), and
/// a done line. `Neither` steps write one line, so that the ledger gives an operator a clear
/// answer (a half-done step with two lines would need a human's judgement, not a test's).
fn step_yaml(id: &str, kind: Kind, pause: &str) -> String {
    let both_lines = format!(
        "echo {id}-start >> {{{{ ledger }}}}; sleep {pause}; echo {id}-done >> {{{{ ledger }}}}"
    );
    let check = format!("grep -qx {id}-done {{{{ ledger }}}}");
    match kind {
        Kind::Idempotent => {
            format!("  - {{ id: {id}, on: all, run: '{both_lines}', idempotent: true }}\n")
        }
        Kind::Checked => {
            format!("  - {{ id: {id}, on: all, run: '{both_lines}', check: '{check}' }}\n")
        }
        Kind::Both => format!(
            "  - {{ id: {id}, on: all, run: '{both_lines}', check: '{check}', idempotent: true }}\n"
        ),
        Kind::Neither => format!(
            "  - {{ id: {id}, on: all, run: 'sleep {pause}; echo {id}-done >> {{{{ ledger }}}}' }}\n"
        ),
    }
}

struct Round {
    dir: tempfile::TempDir,
    playbook: PathBuf,
    /// Ledger file of each target.
    ledgers: BTreeMap<&'static str, PathBuf>,
    /// A string in every command line of this round, to find its processes on the "targets".
    marker: String,
}

fn write_round(servers: &[Sshd], round: u32) -> Round {
    let dir = tempfile::Builder::new()
        .prefix("runner-torture-")
        .tempdir()
        .expect("tempdir");
    let marker = format!("torture-ledger-{}-{round}", std::process::id());
    let mut yaml = String::from("name: crash torture\nwindow:\n  business_hours: []\ntargets:\n");
    let mut ledgers = BTreeMap::new();
    for (name, sshd) in TARGETS.iter().zip(servers) {
        let ledger = sshd.dir().join(&marker);
        yaml.push_str(&format!(
            "  {name}:\n    transport: ssh\n    host: {}\n    port: {}\n    user: {}\n    key: {}\n    known_hosts: {}\n    vars: {{ ledger: {} }}\n",
            sshd.host(),
            sshd.port(),
            sshd.user(),
            sshd.user_key_path().display(),
            sshd.known_hosts_path().display(),
            ledger.display()
        ));
        ledgers.insert(*name, ledger);
    }
    yaml.push_str(&format!(
        "groups:\n  all: [{}]\nsteps:\n",
        TARGETS.join(", ")
    ));
    for (i, (id, kind)) in STEPS.iter().enumerate() {
        let pause = ["0.1", "0.2", "0.3"][i % 3];
        yaml.push_str(&step_yaml(id, *kind, pause));
    }
    let playbook = dir.path().join("torture.yaml");
    fs::write(&playbook, yaml).expect("write playbook");
    Round {
        dir,
        playbook,
        ledgers,
        marker,
    }
}

fn ledger_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn count(lines: &[String], line: &str) -> usize {
    lines.iter().filter(|l| *l == line).count()
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

/// Plays the careful operator after a crash: waits until the dead runner's sessions on the
/// targets are gone and no command it started still runs there. A killed client does not stop
/// a command sshd already started (no terminal, no SIGHUP), so the ledger is only the truth
/// once those commands have ended.
fn wait_quiet(servers: &[Sshd], marker: &str) {
    let configs: Vec<String> = servers
        .iter()
        .map(|s| s.dir().join("sshd_config").display().to_string())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let procs = processes();
        let listeners: Vec<u32> = procs
            .iter()
            .filter(|(_, _, cmd)| configs.iter().any(|c| cmd.contains(c.as_str())))
            .map(|(pid, _, _)| *pid)
            .collect();
        let busy = procs
            .iter()
            .any(|(_, ppid, cmd)| listeners.contains(ppid) || cmd.contains(marker));
        if !busy {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sessions of a killed runner still run on the targets after 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Apply {
    /// None when this test killed it.
    code: Option<i32>,
    log: String,
}

/// Starts `runner apply`; kills it with SIGKILL after `kill_after` unless it ended before.
fn apply(round: &Round, kill_after: Option<Duration>) -> Apply {
    let log_path = round.dir.path().join("apply.log");
    let log = fs::File::create(&log_path).expect("create apply log");
    let err = log.try_clone().expect("clone log handle");
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("apply")
        .arg(&round.playbook)
        .arg("--quiet")
        .env_remove("RUNNER_NOW")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .expect("spawn runner");
    let started = Instant::now();
    let limit = kill_after.unwrap_or(APPLY_TIMEOUT);
    loop {
        if let Some(status) = child.try_wait().expect("wait for runner") {
            return Apply {
                code: status.code(),
                log: fs::read_to_string(&log_path).unwrap_or_default(),
            };
        }
        if started.elapsed() >= limit {
            // SIGKILL: the runner gets no chance to tidy up, like a power cut.
            child.kill().expect("kill runner");
            let status = child.wait().expect("reap runner");
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            assert!(
                kill_after.is_some(),
                "apply did not finish within {APPLY_TIMEOUT:?}:\n{log}"
            );
            return Apply {
                code: status.code(),
                log,
            };
        }
        // Polling the child: a blocking wait could not be cut at the chosen moment.
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn mark(round: &Round, pair: &str, decision: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("mark")
        .arg(&round.playbook)
        .arg(pair)
        .arg(decision)
        .arg("--reason")
        .arg("torture: read the ledger on the target")
        .env_remove("RUNNER_NOW")
        .output()
        .expect("run runner mark");
    assert_eq!(
        out.status.code(),
        Some(0),
        "runner mark {pair} {decision} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn state_path(round: &Round) -> PathBuf {
    round.dir.path().join(".runner").join("torture.db")
}

fn kind_of(step: &str) -> Kind {
    STEPS
        .iter()
        .find(|(id, _)| *id == step)
        .map(|(_, k)| *k)
        .unwrap_or(Kind::Idempotent)
}

#[derive(Default, Debug)]
struct Counts {
    rounds: u32,
    applies: u32,
    kills: u32,
    kills_that_missed: u32,
    /// Where the kills landed: in a step of each kind, or outside any command.
    landed: BTreeMap<&'static str, u32>,
    operator_done: u32,
    operator_retry: u32,
    idempotent_reruns: usize,
    checked_reruns: usize,
    failed_checks: usize,
}

/// One round: apply, kill, resume, play the operator, until done; then check the promises.
fn round(servers: &[Sshd], n: u32, clean: Duration, rng: &mut Rng, counts: &mut Counts) {
    let round = write_round(servers, n);
    let kills_planned = 1 + rng.below(u64::from(MAX_KILLS_PER_ROUND)) as u32;
    let mut kills = 0;
    let mut applies = 0;
    loop {
        applies += 1;
        assert!(applies < 100, "round {n}: no end after 100 applies");
        // A resume has less left to do than a clean apply: scale the moment to what is left.
        let left = left_fraction(&round);
        let kill_after = (kills < kills_planned)
            .then(|| clean.mul_f64(left * rng.below(KILL_PERMILLE_MAX) as f64 / 1000.0));
        let a = apply(&round, kill_after);
        counts.applies += 1;
        match a.code {
            None => {
                kills += 1;
                counts.kills += 1;
                *counts.landed.entry(landed_in(&round)).or_default() += 1;
                wait_quiet(servers, &round.marker);
                continue;
            }
            Some(0) => {
                if kill_after.is_some() {
                    counts.kills_that_missed += 1;
                }
                break;
            }
            Some(4) => panic!("round {n}: a resume was blocked (exit 4):\n{}", a.log),
            Some(1) => {
                // In doubt: the operator reads the ledger and decides.
                let decided = operator(&round, counts);
                assert!(
                    decided > 0,
                    "round {n}: apply failed with nothing in doubt:\n{}",
                    a.log
                );
            }
            Some(c) => panic!("round {n}: apply exited {c}:\n{}", a.log),
        }
    }
    check_round(&round, n, counts);
    counts.rounds += 1;
}

/// The share of step x target pairs not yet done (1 before the first apply).
fn left_fraction(round: &Round) -> f64 {
    let total = STEPS.len() * TARGETS.len();
    if !state_path(round).exists() {
        return 1.0;
    }
    let journal = Journal::open(&state_path(round)).expect("open journal");
    let done = journal
        .pairs()
        .expect("read pairs")
        .iter()
        .filter(|(_, _, st)| matches!(st, PairState::Succeeded { .. }))
        .count();
    (total.saturating_sub(done) as f64 / total as f64).max(0.05)
}

/// What was running when the runner was killed, from the journal's `running` rows.
fn landed_in(round: &Round) -> &'static str {
    let journal = Journal::open(&state_path(round)).expect("open journal");
    let running: Vec<Kind> = journal
        .pairs()
        .expect("read pairs")
        .into_iter()
        .filter(|(_, _, st)| matches!(st, PairState::Running { .. }))
        .map(|(step, _, _)| kind_of(&step))
        .collect();
    match running.first() {
        None => "no step",
        Some(Kind::Idempotent) => "idempotent",
        Some(Kind::Checked) => "checked",
        Some(Kind::Both) => "idempotent+checked",
        Some(Kind::Neither) => "neither",
    }
}

/// Marks every in-doubt `Neither` pair after the ledger: `done` if its line is there, `retry`
/// if not. Returns how many pairs it decided.
fn operator(round: &Round, counts: &mut Counts) -> u32 {
    let journal = Journal::open(&state_path(round)).expect("open journal");
    let mut decided = 0;
    for (step, target, st) in journal.pairs().expect("read pairs") {
        let in_doubt = matches!(
            st,
            PairState::Failed {
                state: AttemptState::Interrupted,
                ..
            }
        );
        if !in_doubt || kind_of(&step) != Kind::Neither {
            continue;
        }
        let Some(ledger) = round.ledgers.get(target.as_str()) else {
            continue;
        };
        let done = count(&ledger_lines(ledger), &format!("{step}-done")) > 0;
        mark(
            round,
            &format!("{step}@{target}"),
            if done { "done" } else { "retry" },
        );
        if done {
            counts.operator_done += 1;
        } else {
            counts.operator_retry += 1;
        }
        decided += 1;
    }
    decided
}

fn check_round(round: &Round, n: u32, counts: &mut Counts) {
    let journal = Journal::open(&state_path(round)).expect("open journal");
    let attempts = journal.attempts(None).expect("read attempts");
    let marks = journal.marks().expect("read marks");
    let pairs: BTreeMap<(String, String), PairState> = journal
        .pairs()
        .expect("read pairs")
        .into_iter()
        .map(|(s, t, st)| ((s, t), st))
        .collect();
    for (target, ledger) in &round.ledgers {
        let lines = ledger_lines(ledger);
        for (step, kind) in STEPS {
            let here = |a: &&runner::journal::Attempt| a.step_id == *step && a.target == *target;
            let runs = attempts
                .iter()
                .filter(here)
                .filter(|a| a.kind == AttemptKind::Run)
                .count();
            let run_successes = attempts
                .iter()
                .filter(here)
                .filter(|a| a.kind == AttemptKind::Run && a.state == AttemptState::Succeeded)
                .count();
            let failed_checks = attempts
                .iter()
                .filter(here)
                .filter(|a| a.kind == AttemptKind::Check && a.state == AttemptState::Failed)
                .count();
            let done = count(&lines, &format!("{step}-done"));
            let started = if *kind == Kind::Neither {
                done
            } else {
                count(&lines, &format!("{step}-start"))
            };
            let history: Vec<String> = attempts
                .iter()
                .filter(here)
                .map(|a| {
                    format!(
                        "{} #{} {} {}",
                        a.kind.as_str(),
                        a.number,
                        a.state.as_str(),
                        a.message.as_deref().unwrap_or("")
                    )
                })
                .chain(
                    marks
                        .iter()
                        .filter(|m| m.step_id == *step && m.target == *target)
                        .map(|m| format!("mark {:?} by {}", m.mark, m.user)),
                )
                .collect();
            let ctx = format!(
                "round {n}, `{step}` on `{target}`; ledger {lines:?}; journal {history:#?}"
            );

            // Every step completed on every target, in the journal and on the target.
            let st = pairs.get(&(step.to_string(), target.to_string()));
            assert!(
                matches!(st, Some(PairState::Succeeded { .. })),
                "{ctx}: journal says {st:?}"
            );
            assert!(done >= 1, "{ctx}: never completed on the target");
            // Intent before action: every run on the target had a journaled attempt first.
            assert!(
                started <= runs,
                "{ctx}: {started} runs on the target, {runs} in the journal"
            );
            // No success recorded that the target did not see.
            assert!(
                run_successes <= done,
                "{ctx}: {run_successes} successes journaled, {done} completions on the target"
            );
            match kind {
                Kind::Neither => assert_eq!(done, 1, "{ctx}: ran more than once"),
                Kind::Checked => {
                    assert_eq!(done, 1, "{ctx}: completed more than once");
                    // Each extra start must have been decided by a check saying "not done".
                    assert!(
                        started <= 1 + failed_checks,
                        "{ctx}: {started} starts but only {failed_checks} failed checks"
                    );
                    counts.checked_reruns += started - 1;
                    counts.failed_checks += failed_checks;
                }
                Kind::Idempotent | Kind::Both => counts.idempotent_reruns += started - 1,
            }
        }
    }
}

#[test]
#[ignore = "long: run with scripts/torture.sh"]
fn kill_nine_and_resume_until_done() {
    let seed = env_u64("TORTURE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let rounds = env_u64("TORTURE_ROUNDS").unwrap_or(25) as u32;
    println!("torture: seed {seed} (replay with TORTURE_SEED={seed}), {rounds} rounds");
    let mut rng = Rng(seed | 1);
    let servers: Vec<Sshd> = (1..=3)
        .map(|i| Sshd::start(&format!("127.0.91.{i}")))
        .collect();
    // Clean applies (no kill) set the time scale: on a loaded machine an apply takes longer,
    // and fixed kill moments would all land in its first steps. The median of three.
    let mut cleans: Vec<Duration> = (0..3)
        .map(|i| {
            let calibration = write_round(&servers, 1000 + i);
            let started = Instant::now();
            let a = apply(&calibration, None);
            assert_eq!(a.code, Some(0), "a clean apply failed:\n{}", a.log);
            started.elapsed()
        })
        .collect();
    cleans.sort();
    let clean = cleans[1];
    println!("torture: a clean apply takes {clean:?}; kills land within 0-110% of that");
    let mut counts = Counts::default();
    for n in 1..=rounds {
        round(&servers, n, clean, &mut rng, &mut counts);
    }
    println!(
        "torture: {} rounds, {} applies, {} kill -9 (landed in: {:?}; {} more came after the \
         apply had finished), operator marks: {} done / {} retry, reruns: {} of idempotent steps, \
         {} of checked steps (after {} failed checks), exit 4 never seen",
        counts.rounds,
        counts.applies,
        counts.kills,
        counts.landed,
        counts.kills_that_missed,
        counts.operator_done,
        counts.operator_retry,
        counts.idempotent_reruns,
        counts.checked_reruns,
        counts.failed_checks
    );
    assert_eq!(counts.rounds, rounds);
    assert!(
        counts.kills > 0,
        "no kill happened: the torture tested nothing"
    );
}

// ---------------------------------------------------------------------------------------------
// Mixed faults: the identity rules, SIGHUP, SIGTERM, the local transport and a symlinked
// playbook, on top of `kill -9`.
//
// Four targets (three over sshd, one local) and a pool of five sshd hosts. Between applies the
// round renames a done step or a target (same address), or moves a target to another sshd
// host (never one it was on before), and then plays the operator: the next apply must stop
// with exit 4, and the round decides with `runner mark` or `--accept-changed`. During applies
// it sends SIGHUP (the run must carry on), SIGTERM (the polite stop, a point where nothing is
// in doubt), `kill -9`, and sometimes starts a second apply through the other path to the
// playbook (a symlink in another folder), which must find the lock taken.
//
// Each ledger line records where it ran (one ledger file per target and host: the command
// finds its host in `$SSH_CONNECTION`) and when (start and end in nanoseconds), so a step run
// twice shows as two lines on one host, and two copies at once as overlapping intervals.
// After a `kill -9` no local command may go on: the round waits until none is left (they
// must be gone within a bound) and checks that the ledger did not change after that.
// ---------------------------------------------------------------------------------------------

/// sshd hosts of the mixed mode (127.0.92.x, apart from the plain mode's).
const POOL: usize = 5;
/// Targets over sshd; a fourth target is local.
const SSH_SLOTS: usize = 3;
/// Most mutations (renames, moves) per round.
const MAX_MUTATIONS: u64 = 3;
/// How long the local commands of a killed runner may take to be gone.
const LOCAL_DEATH_LIMIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mutation {
    RenameStep,
    RenameTarget,
    MoveTarget,
}

impl Mutation {
    fn name(self) -> &'static str {
        match self {
            Mutation::RenameStep => "rename step",
            Mutation::RenameTarget => "rename target",
            Mutation::MoveTarget => "move target",
        }
    }
}

/// What the operator answers to the exit 4 that follows a mutation.
#[derive(Clone, Debug)]
enum Decision {
    /// `apply --accept-changed` until an apply ends by itself.
    Accept,
    /// `runner mark` of each of these pairs with this word.
    Marks(Vec<(String, &'static str)>),
}

/// A target of the playbook across the round: its names and the hosts it was on.
struct Slot {
    /// Every name it had; the last is the current one.
    names: Vec<String>,
    /// Pool indices it was on, for an sshd target; the last is the current one. Empty: local.
    hosts: Vec<usize>,
    /// The ledger file's stem; the command appends `.<server address>` or `.local`.
    ledger: PathBuf,
    /// When it left each host it was moved away from (ns since the epoch): nothing may start
    /// there after that.
    left_at: BTreeMap<usize, u128>,
}

impl Slot {
    fn name(&self) -> &str {
        self.names.last().map(String::as_str).unwrap_or("")
    }
    fn is_local(&self) -> bool {
        self.hosts.is_empty()
    }
    /// Where it is now: a pool index, or `None` for local.
    fn host(&self) -> Option<usize> {
        self.hosts.last().copied()
    }
}

struct Label {
    /// The text every ledger line of this step carries, whatever its id.
    label: &'static str,
    kind: Kind,
    /// Every id it had; the last is the current one.
    ids: Vec<String>,
}

impl Label {
    fn id(&self) -> &str {
        self.ids.last().map(String::as_str).unwrap_or("")
    }
}

struct Mixed {
    dir: tempfile::TempDir,
    /// The playbook file.
    real: PathBuf,
    /// A symlink to it from another folder.
    alias: PathBuf,
    slots: Vec<Slot>,
    labels: Vec<Label>,
    /// Per (label, slot): the hosts where the step must have completed exactly once
    /// (`None`: the local machine).
    owners: BTreeMap<(usize, usize), std::collections::BTreeSet<Option<usize>>>,
    /// A string in the command line of every local command of this round.
    local_marker: String,
    /// The pool's addresses.
    ips: Vec<String>,
    renames: u32,
}

/// The ledger file of a target on a host: the stem, then the server's address or `local`.
fn ledger_of(slot: &Slot, ips: &[String], host: Option<usize>) -> PathBuf {
    let mut name = slot.ledger.as_os_str().to_owned();
    match host {
        Some(h) => name.push(format!(".{}", ips[h])),
        None => name.push(".local"),
    }
    PathBuf::from(name)
}

fn identity_matches(identity: Option<&str>, servers: &[Sshd], host: Option<usize>) -> bool {
    match (identity, host) {
        (Some(id), Some(h)) => {
            id.ends_with(&format!("@{}:{}", servers[h].host(), servers[h].port()))
        }
        (Some(id), None) => id == "local",
        (None, _) => false,
    }
}

/// The command of a step: it finds its ledger by the server address it was reached at, and
/// writes `<label>-done <start> <end>` when it completes (and `<label>-start <start>` first,
/// unless it is a `Neither` step, whose ledger must give the operator a clear answer).
fn mixed_step_yaml(id: &str, label: &str, kind: Kind, pause: &str) -> String {
    let ledger = "L={{ ledger }}.$(set -- $SSH_CONNECTION; echo ${3:-local}); s=$(date +%s%N)";
    let start = format!("echo \"{label}-start $s\" >> $L; ");
    let done = format!("sleep {pause}; echo \"{label}-done $s $(date +%s%N)\" >> $L");
    let check = format!(
        "grep -q \"^{label}-done \" {{{{ ledger }}}}.$(set -- $SSH_CONNECTION; echo ${{3:-local}})"
    );
    match kind {
        Kind::Idempotent => {
            format!("  - {{ id: {id}, on: all, run: '{ledger}; {start}{done}', idempotent: true }}\n")
        }
        Kind::Checked => format!(
            "  - {{ id: {id}, on: all, run: '{ledger}; {start}{done}', check: '{check}' }}\n"
        ),
        Kind::Both => format!(
            "  - {{ id: {id}, on: all, run: '{ledger}; {start}{done}', check: '{check}', idempotent: true }}\n"
        ),
        Kind::Neither => format!("  - {{ id: {id}, on: all, run: '{ledger}; {done}' }}\n"),
    }
}

impl Mixed {
    fn new(servers: &[Sshd], round: u32) -> Mixed {
        let dir = tempfile::Builder::new()
            .prefix("runner-torture-")
            .tempdir()
            .expect("tempdir");
        let marker = format!("torture-mixed-{}-{round}", std::process::id());
        let mut slots: Vec<Slot> = (0..SSH_SLOTS)
            .map(|i| Slot {
                names: vec![format!("t{}", i + 1)],
                hosts: vec![i],
                ledger: dir.path().join(format!("{marker}-ssh{i}")),
                left_at: BTreeMap::new(),
            })
            .collect();
        slots.push(Slot {
            names: vec!["tl".to_string()],
            hosts: Vec::new(),
            ledger: dir.path().join(format!("{marker}-local")),
            left_at: BTreeMap::new(),
        });
        let labels: Vec<Label> = STEPS
            .iter()
            .map(|(id, kind)| Label {
                label: id,
                kind: *kind,
                ids: vec![id.to_string()],
            })
            .collect();
        let mut owners = BTreeMap::new();
        for l in 0..labels.len() {
            for (s, slot) in slots.iter().enumerate() {
                owners.insert((l, s), [slot.host()].into_iter().collect());
            }
        }
        let real = dir.path().join("torture.yaml");
        fs::create_dir(dir.path().join("alias")).expect("alias folder");
        let alias = dir.path().join("alias").join("cutover.yaml");
        std::os::unix::fs::symlink(&real, &alias).expect("symlink to the playbook");
        let m = Mixed {
            local_marker: format!("{marker}-local"),
            dir,
            real,
            alias,
            slots,
            labels,
            owners,
            ips: servers.iter().map(|s| s.host().to_string()).collect(),
            renames: 0,
        };
        m.write(servers);
        m
    }

    fn write(&self, servers: &[Sshd]) {
        let mut yaml =
            String::from("name: crash torture\nwindow:\n  business_hours: []\ntargets:\n");
        for slot in &self.slots {
            match slot.host() {
                Some(h) => {
                    let sshd = &servers[h];
                    yaml.push_str(&format!(
                        "  {}:\n    transport: ssh\n    host: {}\n    port: {}\n    user: {}\n    key: {}\n    known_hosts: {}\n    vars: {{ ledger: {} }}\n",
                        slot.name(),
                        sshd.host(),
                        sshd.port(),
                        sshd.user(),
                        sshd.user_key_path().display(),
                        sshd.known_hosts_path().display(),
                        slot.ledger.display()
                    ));
                }
                None => yaml.push_str(&format!(
                    "  {}:\n    transport: local\n    vars: {{ ledger: {} }}\n",
                    slot.name(),
                    slot.ledger.display()
                )),
            }
        }
        let names: Vec<&str> = self.slots.iter().map(Slot::name).collect();
        yaml.push_str(&format!("groups:\n  all: [{}]\nsteps:\n", names.join(", ")));
        for (i, l) in self.labels.iter().enumerate() {
            let pause = ["0.1", "0.2", "0.3"][i % 3];
            yaml.push_str(&mixed_step_yaml(l.id(), l.label, l.kind, pause));
        }
        // Replaced in one rename, as an editor saving the file would.
        let tmp = self.dir.path().join("torture.yaml.new");
        fs::write(&tmp, yaml).expect("write playbook");
        fs::rename(&tmp, &self.real).expect("replace playbook");
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join(".runner").join("torture.db")
    }

    fn label_of(&self, step: &str) -> Option<usize> {
        self.labels
            .iter()
            .position(|l| l.ids.iter().any(|i| i == step))
    }

    fn slot_of(&self, target: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.names.iter().any(|n| n == target))
    }

    /// The journal's pair states by (label, slot), for the current ids and names.
    fn pair_states(&self) -> BTreeMap<(usize, usize), PairState> {
        let mut out = BTreeMap::new();
        if !self.state().exists() {
            return out;
        }
        let journal = Journal::open(&self.state()).expect("open journal");
        for (step, target, st) in journal.pairs().expect("read pairs") {
            let (Some(l), Some(s)) = (self.label_of(&step), self.slot_of(&target)) else {
                continue;
            };
            if self.labels[l].id() == step && self.slots[s].name() == target {
                out.insert((l, s), st);
            }
        }
        out
    }

    fn in_doubt(&self) -> bool {
        self.pair_states().values().any(|st| {
            matches!(
                st,
                PairState::Running { .. }
                    | PairState::Failed {
                        state: AttemptState::Interrupted,
                        ..
                    }
            )
        })
    }

    fn left_fraction(&self) -> f64 {
        let total = self.labels.len() * self.slots.len();
        let done = self
            .pair_states()
            .values()
            .filter(|st| matches!(st, PairState::Succeeded { .. }))
            .count();
        (total.saturating_sub(done) as f64 / total as f64).max(0.05)
    }

    fn lines(&self, s: usize, host: Option<usize>) -> Vec<String> {
        ledger_lines(&ledger_of(&self.slots[s], &self.ips, host))
    }

    fn current_ledger(&self, s: usize) -> PathBuf {
        ledger_of(&self.slots[s], &self.ips, self.slots[s].host())
    }
}

/// `<label>-done <start> <end>` lines of a ledger as (start, end).
fn done_runs(lines: &[String], label: &str) -> Vec<(u128, u128)> {
    let prefix = format!("{label}-done ");
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let mut f = rest
                .split_whitespace()
                .map(|n| n.parse::<u128>().unwrap_or(0));
            (f.next().unwrap_or(0), f.next().unwrap_or(0))
        })
        .collect()
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Faults for one apply, as moments after it started.
#[derive(Default, Clone, Copy, Debug)]
struct Faults {
    kill: Option<Duration>,
    /// The kill waits, from its moment on, until a local command of the round runs.
    kill_in_local: bool,
    hup: Option<Duration>,
    term: Option<Duration>,
    /// A second apply through the other path to the playbook.
    twin: Option<Duration>,
}

struct MixedApply {
    code: Option<i32>,
    signal: Option<i32>,
    log: String,
    /// When this test killed it (after it was reaped), in ns since the epoch.
    killed_at: Option<u128>,
    hup_sent: bool,
    term_sent: bool,
    /// A local command of this round was running just before the kill.
    local_busy: bool,
    /// The twin's exit code, and whether the first apply was still running when it ended.
    twin: Option<(Option<i32>, bool, String)>,
}

fn runner_cmd(args: &[&std::ffi::OsStr], log: &fs::File) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    c.args(args)
        .env_remove("RUNNER_NOW")
        // The local target finds its ledger by this, as the sshd targets do.
        .env_remove("SSH_CONNECTION")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log.try_clone().expect("clone log handle"));
    c
}

fn mixed_apply(m: &Mixed, via_alias: bool, accept: bool, f: Faults, n: usize) -> MixedApply {
    use std::os::unix::process::ExitStatusExt;
    let (path, other) = if via_alias {
        (&m.alias, &m.real)
    } else {
        (&m.real, &m.alias)
    };
    let log_path = m.dir.path().join(format!("apply-{n}.log"));
    let log = fs::File::create(&log_path).expect("create apply log");
    let mut args: Vec<&std::ffi::OsStr> =
        vec!["apply".as_ref(), path.as_os_str(), "--quiet".as_ref()];
    if accept {
        args.push("--accept-changed".as_ref());
    }
    let mut child = runner_cmd(&args, &log).spawn().expect("spawn runner");
    let started = Instant::now();
    let mut out = MixedApply {
        code: None,
        signal: None,
        log: String::new(),
        killed_at: None,
        hup_sent: false,
        term_sent: false,
        local_busy: false,
        twin: None,
    };
    let mut twin: Option<(std::process::Child, PathBuf)> = None;
    let due = |at: Option<Duration>| at.is_some_and(|t| started.elapsed() >= t);
    loop {
        if let Some((t, tlog)) = twin.as_mut() {
            if let Some(status) = t.try_wait().expect("wait for the second apply") {
                let first_alive = child.try_wait().expect("wait for runner").is_none();
                out.twin = Some((
                    status.code(),
                    first_alive,
                    fs::read_to_string(&*tlog).unwrap_or_default(),
                ));
                twin = None;
            }
        }
        if let Some(status) = child.try_wait().expect("wait for runner") {
            out.code = status.code();
            out.signal = status.signal();
            break;
        }
        let limit = f.kill.unwrap_or(APPLY_TIMEOUT);
        let kill_now = started.elapsed() >= limit
            && (!f.kill_in_local
                || started.elapsed() >= APPLY_TIMEOUT
                || local_commands(&m.local_marker) > 0);
        if kill_now {
            out.local_busy = f.kill.is_some() && local_commands(&m.local_marker) > 0;
            child.kill().expect("kill runner");
            let status = child.wait().expect("reap runner");
            out.code = status.code();
            out.signal = status.signal();
            if f.kill.is_some() {
                out.killed_at = Some(now_ns());
            } else {
                panic!(
                    "apply did not finish within {APPLY_TIMEOUT:?}:\n{}",
                    fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            break;
        }
        // Once the run has begun (it holds the lock): before its signal handlers are set, a
        // SIGHUP ends any program, and the few milliseconds that takes are not this test's.
        if !out.hup_sent && due(f.hup) && holds_lock(m, child.id()) {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
            out.hup_sent = true;
        }
        if !out.term_sent && due(f.term) {
            // SAFETY: as above.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            out.term_sent = true;
        }
        // Only once the first apply holds the lock: started earlier, the second could take it
        // first, and which of the two runs would be a matter of luck, not of the lock.
        if twin.is_none() && out.twin.is_none() && due(f.twin) && holds_lock(m, child.id()) {
            let tlog_path = m.dir.path().join(format!("apply-{n}-twin.log"));
            let tlog = fs::File::create(&tlog_path).expect("create twin log");
            let mut targs: Vec<&std::ffi::OsStr> =
                vec!["apply".as_ref(), other.as_os_str(), "--quiet".as_ref()];
            if accept {
                targs.push("--accept-changed".as_ref());
            }
            let t = runner_cmd(&targs, &tlog)
                .spawn()
                .expect("spawn second runner");
            twin = Some((t, tlog_path));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if let Some((mut t, tlog)) = twin {
        let status = t.wait().expect("wait for the second apply");
        out.twin = Some((
            status.code(),
            false,
            fs::read_to_string(&tlog).unwrap_or_default(),
        ));
    }
    out.log = fs::read_to_string(&log_path).unwrap_or_default();
    out
}

/// Whether process `pid` holds the `flock` on the round's journal lock (from /proc/locks: a
/// probe with `flock` itself could take the lock from under the runner).
fn holds_lock(m: &Mixed, pid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::metadata(runner::journal::lock::lock_path(&m.state())) else {
        return false;
    };
    let inode = format!(":{}", meta.ino());
    fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&"FLOCK")
                && f.get(4) == Some(&pid.to_string().as_str())
                && f.get(5).is_some_and(|dev| dev.ends_with(&inode))
        })
}

fn mixed_mark(m: &Mixed, via_alias: bool, pair: &str, decision: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("mark")
        .arg(if via_alias { &m.alias } else { &m.real })
        .arg(pair)
        .arg(decision)
        .arg("--reason")
        .arg("torture: read the ledger on the target")
        .env_remove("RUNNER_NOW")
        .output()
        .expect("run runner mark");
    assert_eq!(
        out.status.code(),
        Some(0),
        "runner mark {pair} {decision} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Default, Debug)]
struct MixedCounts {
    rounds: u32,
    applies: u32,
    via_symlink: u32,
    kills: u32,
    kills_local_busy: u32,
    /// Kills after which a local command was still there once the runner was reaped.
    local_alive_after_reap: u32,
    /// Lines a dying local command still wrote after its runner was reaped (before it was gone).
    local_late_lines: u32,
    hups: u32,
    terms: u32,
    /// SIGTERMs that came before the runner had its handlers (it ended, nothing started).
    terms_before_handlers: u32,
    twins: u32,
    twins_locked_out: u32,
    mutations: BTreeMap<&'static str, u32>,
    exit4: u32,
    decided_by_mark: u32,
    decided_by_accept: u32,
    operator_done: u32,
    operator_retry: u32,
    ledger_entries_checked: u32,
    doubles: u32,
}

/// Processes of this round's local commands.
fn local_commands(marker: &str) -> usize {
    processes()
        .iter()
        .filter(|(_, _, cmd)| cmd.contains(marker))
        .count()
}

/// `every_fault`: every apply that may be disturbed gets a SIGHUP and (through the symlink) a
/// second apply, and the round changes the playbook at least once, whatever the seed.
fn mixed_round(
    servers: &[Sshd],
    n: u32,
    clean: Duration,
    rng: &mut Rng,
    c: &mut MixedCounts,
    every_fault: bool,
) {
    let mut m = Mixed::new(servers, n);
    // Every other round reaches the playbook through the symlink too.
    let use_alias = n % 2 == 1;
    let kills_planned = 1 + rng.below(u64::from(MAX_KILLS_PER_ROUND)) as u32;
    let mut mutations_left = rng.below(MAX_MUTATIONS + 1).max(u64::from(every_fault));
    let mut kills = 0;
    let mut applies = 0;
    let mut accept = false;
    // After a mutation: the operator's answer to the exit 4 it should cause.
    let mut pending: Option<(Mutation, bool, Decision)> = None;
    loop {
        applies += 1;
        assert!(applies < 100, "round {n}: no end after 100 applies");
        let left = m.left_fraction();
        let at = |rng: &mut Rng| clean.mul_f64(left * rng.below(KILL_PERMILLE_MAX) as f64 / 1000.0);
        // The first apply after a mutation meets the change untouched: the operator sees it.
        let mut f = Faults::default();
        if pending.is_none() {
            if kills < kills_planned && rng.below(4) != 0 {
                f.kill = Some(at(rng));
                f.kill_in_local = rng.below(2) == 0;
            } else if mutations_left > 0 && rng.below(3) == 0 {
                f.term = Some(at(rng));
            }
            if every_fault || rng.below(3) == 0 {
                f.hup = Some(at(rng));
            }
            if use_alias && (every_fault || rng.below(4) == 0) {
                f.twin = Some(at(rng));
            }
        }
        let via_alias = use_alias && rng.below(2) == 0;
        let before_local = m.lines(SSH_SLOTS, None);
        let a = mixed_apply(&m, via_alias, accept, f, applies);
        c.applies += 1;
        c.via_symlink += u32::from(via_alias);
        c.hups += u32::from(a.hup_sent);
        c.terms += u32::from(a.term_sent);
        let ctx = format!("round {n}, apply {applies} ({f:?}, accept {accept})");
        if let Some((code, first_alive, tlog)) = &a.twin {
            c.twins += 1;
            if *first_alive {
                assert_eq!(
                    *code,
                    Some(4),
                    "{ctx}: a second apply through the other path ran beside the first:\n{tlog}"
                );
                c.twins_locked_out += 1;
            }
        }
        if let Some(killed_at) = a.killed_at {
            kills += 1;
            c.kills += 1;
            // A local command must die with its runner: gone within a bound, and nothing
            // written by it after that.
            c.kills_local_busy += u32::from(a.local_busy);
            if local_commands(&m.local_marker) > 0 {
                c.local_alive_after_reap += 1;
            }
            let deadline = Instant::now() + LOCAL_DEATH_LIMIT;
            while local_commands(&m.local_marker) > 0 {
                assert!(
                    Instant::now() < deadline,
                    "{ctx}: a local command still runs {LOCAL_DEATH_LIMIT:?} after its runner was killed"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            let after = m.lines(SSH_SLOTS, None);
            let late = after
                .iter()
                .skip(before_local.len())
                .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u128>().ok())
                .filter(|end| *end > killed_at)
                .count();
            c.local_late_lines += late as u32;
            // Checked again at the start of the next apply: nothing more may appear.
            let quiet = m.lines(SSH_SLOTS, None);
            assert_eq!(
                after, quiet,
                "{ctx}: the local ledger changed after its commands were gone"
            );
            continue;
        }
        if a.signal == Some(libc::SIGTERM) && a.term_sent {
            // SIGTERM before the runner set up its handlers, i.e. before it took the lock:
            // it ended as any program does, with nothing started.
            c.terms_before_handlers += 1;
            continue;
        }
        assert!(
            a.signal.is_none(),
            "{ctx}: the runner died of signal {:?} (SIGHUP must not stop a run):\n{}",
            a.signal,
            a.log
        );
        match a.code {
            Some(4) => {
                c.exit4 += 1;
                let Some((_, _, decision)) = pending.take() else {
                    panic!("{ctx}: exit 4 with no change to decide:\n{}", a.log);
                };
                match decision {
                    Decision::Accept => {
                        accept = true;
                        c.decided_by_accept += 1;
                    }
                    Decision::Marks(marks) => {
                        for (pair, word) in &marks {
                            mixed_mark(&m, use_alias && rng.below(2) == 0, pair, word);
                        }
                        c.decided_by_mark += marks.len() as u32;
                    }
                }
                continue;
            }
            Some(0) | Some(1) | Some(130) => {
                if let Some((mutation, conflict, _)) = pending.take() {
                    assert!(
                        !conflict,
                        "{ctx}: after a {}, apply did not stop (exit {:?}) although a done \
                         step is affected:\n{}",
                        mutation.name(),
                        a.code,
                        a.log
                    );
                }
                accept = false;
            }
            other => panic!("{ctx}: apply exited {other:?}:\n{}", a.log),
        }
        if a.code == Some(1) {
            let decided = mixed_operator(&m, rng, use_alias, c);
            assert!(
                decided > 0,
                "{ctx}: apply failed with nothing in doubt:\n{}",
                a.log
            );
            continue;
        }
        if mutations_left > 0 && !m.in_doubt() && (a.code == Some(0) || rng.below(2) == 0) {
            mutations_left -= 1;
            pending = Some(mutate(&mut m, servers, rng, c));
            continue;
        }
        if a.code == Some(0) {
            break;
        }
    }
    mixed_check(&m, servers, n, c);
    c.rounds += 1;
}

/// Decides every in-doubt `Neither` pair after the ledger on the target's current host.
fn mixed_operator(m: &Mixed, rng: &mut Rng, use_alias: bool, c: &mut MixedCounts) -> u32 {
    let mut decided = 0;
    for ((l, s), st) in m.pair_states() {
        let in_doubt = matches!(
            st,
            PairState::Failed {
                state: AttemptState::Interrupted,
                ..
            }
        );
        if !in_doubt || m.labels[l].kind != Kind::Neither {
            continue;
        }
        let done = !done_runs(&ledger_lines(&m.current_ledger(s)), m.labels[l].label).is_empty();
        let pair = format!("{}@{}", m.labels[l].id(), m.slots[s].name());
        mixed_mark(
            m,
            use_alias && rng.below(2) == 0,
            &pair,
            if done { "done" } else { "retry" },
        );
        if done {
            c.operator_done += 1;
        } else {
            c.operator_retry += 1;
        }
        decided += 1;
    }
    decided
}

/// Changes the playbook between applies as a consultant would, and returns what the next
/// apply must do (stop with exit 4 or not) and the operator's answer.
fn mutate(
    m: &mut Mixed,
    servers: &[Sshd],
    rng: &mut Rng,
    c: &mut MixedCounts,
) -> (Mutation, bool, Decision) {
    let states = m.pair_states();
    let done =
        |l: usize, s: usize| matches!(states.get(&(l, s)), Some(PairState::Succeeded { .. }));
    let strict = |k: Kind| matches!(k, Kind::Checked | Kind::Neither);
    let accept = rng.below(2) == 0;
    m.renames += 1;
    let r = m.renames;
    let mutation = match rng.below(3) {
        0 => Mutation::RenameStep,
        1 => Mutation::RenameTarget,
        _ => Mutation::MoveTarget,
    };
    *c.mutations.entry(mutation.name()).or_default() += 1;
    let mut marks = Vec::new();
    let mut conflict = false;
    match mutation {
        Mutation::RenameStep => {
            let l = rng.below(m.labels.len() as u64) as usize;
            let new_id = format!("{}-r{r}", m.labels[l].label);
            for s in 0..m.slots.len() {
                if strict(m.labels[l].kind) && done(l, s) {
                    conflict = true;
                    marks.push((format!("{new_id}@{}", m.slots[s].name()), "done"));
                }
            }
            m.labels[l].ids.push(new_id);
        }
        Mutation::RenameTarget => {
            let s = rng.below(m.slots.len() as u64) as usize;
            let new_name = format!("{}-r{r}", m.slots[s].names[0]);
            for l in 0..m.labels.len() {
                if strict(m.labels[l].kind) && done(l, s) {
                    conflict = true;
                    marks.push((format!("{}@{new_name}", m.labels[l].id()), "done"));
                }
            }
            m.slots[s].names.push(new_name);
        }
        Mutation::MoveTarget => {
            let s = rng.below(SSH_SLOTS as u64) as usize;
            let free: Vec<usize> = (0..servers.len())
                .filter(|h| !m.slots[s].hosts.contains(h))
                .collect();
            let h = free[rng.below(free.len() as u64) as usize];
            let old = m.slots[s].host();
            for l in 0..m.labels.len() {
                let owners = m.owners.entry((l, s)).or_default();
                if done(l, s) {
                    conflict |= strict(m.labels[l].kind);
                    if !accept {
                        // Run again on the new host: it owes one run there.
                        marks.push((
                            format!("{}@{}", m.labels[l].id(), m.slots[s].name()),
                            "retry",
                        ));
                        owners.insert(Some(h));
                    }
                } else {
                    // Not run on the old host (nothing is in doubt now): it runs on the new one.
                    owners.remove(&old);
                    owners.insert(Some(h));
                }
            }
            if let Some(old) = old {
                m.slots[s].left_at.insert(old, now_ns());
            }
            m.slots[s].hosts.push(h);
        }
    }
    m.write(servers);
    let decision = if accept {
        Decision::Accept
    } else {
        Decision::Marks(marks)
    };
    (mutation, conflict, decision)
}

/// The promises, against the ledgers on every host each target was on, and the journal.
fn mixed_check(m: &Mixed, servers: &[Sshd], n: u32, c: &mut MixedCounts) {
    let journal = Journal::open(&m.state()).expect("open journal");
    let attempts = journal.attempts(None).expect("read attempts");
    let states = m.pair_states();
    let mut failures = Vec::new();
    assert!(
        !m.alias
            .parent()
            .map(|p| p.join(".runner").exists())
            .unwrap_or(false),
        "round {n}: the symlinked playbook got a journal of its own"
    );
    for (s, slot) in m.slots.iter().enumerate() {
        let hosts: Vec<Option<usize>> = if slot.is_local() {
            vec![None]
        } else {
            slot.hosts.iter().map(|h| Some(*h)).collect()
        };
        for (l, label) in m.labels.iter().enumerate() {
            let owners = m.owners.get(&(l, s)).cloned().unwrap_or_default();
            let st = states.get(&(l, s));
            if !matches!(st, Some(PairState::Succeeded { .. })) {
                failures.push(format!(
                    "`{}@{}`: journal says {st:?} at the end",
                    label.id(),
                    slot.name()
                ));
            }
            for h in &hosts {
                let lines = m.lines(s, *h);
                let mut runs = done_runs(&lines, label.label);
                c.ledger_entries_checked += runs.len() as u32;
                let here: Vec<&runner::journal::Attempt> = attempts
                    .iter()
                    .filter(|a| label.ids.contains(&a.step_id) && slot.names.contains(&a.target))
                    .filter(|a| identity_matches(a.target_identity.as_deref(), servers, *h))
                    .collect();
                let journaled_runs = here.iter().filter(|a| a.kind == AttemptKind::Run).count();
                let journaled_successes = here
                    .iter()
                    .filter(|a| a.kind == AttemptKind::Run && a.state == AttemptState::Succeeded)
                    .count();
                let starts = if label.kind == Kind::Neither {
                    runs.len()
                } else {
                    lines
                        .iter()
                        .filter(|x| x.starts_with(&format!("{}-start ", label.label)))
                        .count()
                };
                let mine: Vec<&String> = lines
                    .iter()
                    .filter(|x| x.starts_with(&format!("{}-", label.label)))
                    .collect();
                let ctx = format!(
                    "`{}` on `{}` at {}: ledger {mine:?}; owed on {owners:?}",
                    label.label,
                    slot.name(),
                    h.map(|h| m.ips[h].as_str()).unwrap_or("local")
                );
                runs.sort();
                for w in runs.windows(2) {
                    if w[1].0 < w[0].1 {
                        c.doubles += 1;
                        failures.push(format!("{ctx}: two runs overlap: {w:?}"));
                    }
                }
                if let Some(left) = h.and_then(|h| slot.left_at.get(&h)) {
                    let later: Vec<&&String> = mine
                        .iter()
                        .filter(|x| {
                            x.split_whitespace()
                                .nth(1)
                                .and_then(|t| t.parse::<u128>().ok())
                                .is_some_and(|t| t > *left)
                        })
                        .collect();
                    if !later.is_empty() {
                        failures.push(format!(
                            "{ctx}: ran on the old host after the move: {later:?}"
                        ));
                    }
                }
                let owed = owners.contains(h);
                match label.kind {
                    Kind::Neither | Kind::Checked => {
                        if runs.len() != usize::from(owed) {
                            if runs.len() > 1 {
                                c.doubles += 1;
                            }
                            failures.push(format!(
                                "{ctx}: completed {} times, owed {}",
                                runs.len(),
                                usize::from(owed)
                            ));
                        }
                    }
                    Kind::Idempotent | Kind::Both => {
                        if owed && runs.is_empty() {
                            failures.push(format!("{ctx}: never completed"));
                        }
                    }
                }
                if starts > journaled_runs {
                    failures.push(format!(
                        "{ctx}: {starts} runs on the host, {journaled_runs} in the journal"
                    ));
                }
                if journaled_successes > runs.len() {
                    failures.push(format!(
                        "{ctx}: {journaled_successes} successes journaled, {} on the host",
                        runs.len()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "round {n} (folder {}):\n{}",
        m.dir.path().display(),
        failures.join("\n")
    );
}

fn start_pool() -> Vec<Sshd> {
    (1..=POOL)
        .map(|i| Sshd::start(&format!("127.0.92.{i}")))
        .collect()
}

/// Clean applies of fresh mixed rounds (the median of `samples`): the time scale of the fault
/// moments.
fn mixed_clean(servers: &[Sshd], samples: u32) -> Duration {
    let mut cleans: Vec<Duration> = (0..samples)
        .map(|i| {
            let m = Mixed::new(servers, 1000 + i);
            let started = Instant::now();
            let a = mixed_apply(&m, false, false, Faults::default(), 0);
            assert_eq!(a.code, Some(0), "a clean apply failed:\n{}", a.log);
            started.elapsed()
        })
        .collect();
    cleans.sort();
    cleans[cleans.len() / 2]
}

fn run_mixed(seed: u64, rounds: u32, samples: u32, every_fault: bool) -> MixedCounts {
    println!("torture (mixed): seed {seed} (replay with TORTURE_SEED={seed}), {rounds} rounds");
    let mut rng = Rng(seed | 1);
    let servers = start_pool();
    let clean = mixed_clean(&servers, samples);
    println!("torture (mixed): a clean apply takes {clean:?}");
    let mut c = MixedCounts::default();
    for n in 1..=rounds {
        mixed_round(&servers, n, clean, &mut rng, &mut c, every_fault);
    }
    println!(
        "torture (mixed): {} rounds, {} applies ({} through the symlink), faults: {} kill -9 \
         ({} with a local command running, {} of them still there once the runner was reaped, \
         {} ledger lines written by a dying local command after that), {} SIGHUP, {} SIGTERM ({} before the runner had set its handlers), {} second applies ({} found the lock \
         taken), mutations {:?}, exit 4 {} times, decided by {} marks / {} accept-changed, \
         operator after kill: {} done / {} retry; {} ledger entries checked, doubles found: {}",
        c.rounds,
        c.applies,
        c.via_symlink,
        c.kills,
        c.kills_local_busy,
        c.local_alive_after_reap,
        c.local_late_lines,
        c.hups,
        c.terms,
        c.terms_before_handlers,
        c.twins,
        c.twins_locked_out,
        c.mutations,
        c.exit4,
        c.decided_by_mark,
        c.decided_by_accept,
        c.operator_done,
        c.operator_retry,
        c.ledger_entries_checked,
        c.doubles
    );
    assert_eq!(c.rounds, rounds);
    assert_eq!(c.doubles, 0);
    c
}

#[test]
#[ignore = "long: run with scripts/torture.sh"]
fn mixed_faults_never_run_twice() {
    let seed = env_u64("TORTURE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let rounds = env_u64("TORTURE_ROUNDS").unwrap_or(15) as u32;
    let c = run_mixed(seed, rounds, 3, false);
    assert!(c.kills > 0, "no kill happened: the torture tested nothing");
}

/// Two rounds of the mixed mode with a fixed seed: a quick look that the mode itself works
/// (`TORTURE_MODE=smoke scripts/torture.sh`). Ignored too: a round takes longer than the
/// normal test suite can afford.
#[test]
#[ignore = "about a minute: run with TORTURE_MODE=smoke scripts/torture.sh"]
fn mixed_faults_smoke() {
    let c = run_mixed(SMOKE_SEED, 2, 1, true);
    let mutations: u32 = c.mutations.values().sum();
    assert!(
        c.kills > 0 && c.hups > 0 && mutations > 0 && c.via_symlink > 0,
        "the smoke rounds did not inject every kind of fault: {c:?}"
    );
}

/// The smoke rounds' seed (they inject every kind of fault whatever it is).
const SMOKE_SEED: u64 = 1;
