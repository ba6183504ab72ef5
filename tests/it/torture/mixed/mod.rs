//! Mixed faults (renames, moves, SIGHUP, SIGTERM, `kill -9`, a second apply through a symlink)
//! never run a step twice or two copies at once, and every change stops for the operator.
//!
//! Mixed faults: the identity rules, SIGHUP, SIGTERM, the local transport and a symlinked
//! playbook, on top of `kill -9`.
//!
//! Four targets (three over sshd, one local) and a pool of five sshd hosts. Between applies the
//! round renames a done step or a target (same address), or moves a target to another sshd
//! host (never one it was on before), and then plays the operator: the next apply must stop
//! with exit 4, and the round decides with `runner mark` or `--accept-changed`. During applies
//! it sends SIGHUP (the run must carry on), SIGTERM (the polite stop, a point where nothing is
//! in doubt), `kill -9`, and sometimes starts a second apply through the other path to the
//! playbook (a symlink in another folder), which must find the lock taken.
//!
//! Each ledger line records where it ran (one ledger file per target and host: the command
//! finds its host in `$SSH_CONNECTION`) and when (start and end in nanoseconds), so a step run
//! twice shows as two lines on one host, and two copies at once as overlapping intervals.
//! After a `kill -9` no local command may go on: the round waits until none is left (they
//! must be gone within a bound) and checks that the ledger did not change after that.
//!
//! The parts: `apply` (one apply with its faults, and marks), `round` (applies, mutations and
//! the operator until done) and `check` (the ledgers against the journal after a round); this
//! file holds the state of a round (`Mixed`) and runs the rounds.

use super::*;

mod apply;
mod check;
mod round;

use apply::{local_commands, mixed_apply, mixed_mark};
use check::mixed_check;
use round::mixed_round;

/// sshd hosts of the mixed mode (127.0.92.x, apart from the plain mode's).
const POOL: usize = 5;

/// Targets over sshd; a fourth target is local.
const SSH_SLOTS: usize = 3;

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

/// The ledger file of a target on a host: the stem, then the server's address or `local`.
fn ledger_of(slot: &Slot, ips: &[String], host: Option<usize>) -> PathBuf {
    let mut name = slot.ledger.as_os_str().to_owned();
    match host {
        Some(h) => name.push(format!(".{}", ips[h])),
        None => name.push(".local"),
    }
    PathBuf::from(name)
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
