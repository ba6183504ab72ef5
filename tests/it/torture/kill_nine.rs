//! `kill -9` at random moments over three sshd targets, resumed until done: no step that succeeded
//! runs again, a step in doubt is settled by its check, its idempotence or the operator, and the
//! journal agrees with the ledgers.

use super::*;

const TARGETS: &[&str] = &["t1", "t2", "t3"];

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

fn count(lines: &[String], line: &str) -> usize {
    lines.iter().filter(|l| *l == line).count()
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
