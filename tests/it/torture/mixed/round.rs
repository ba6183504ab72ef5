//! One round of the mixed mode: applies with faults until done, mutations between them (a renamed
//! step or target, a target moved to another host), and the operator's answer to the exit 4 each
//! mutation causes.

use super::*;

/// Most mutations (renames, moves) per round.
const MAX_MUTATIONS: u64 = 3;

/// How long the local commands of a killed runner may take to be gone.
const LOCAL_DEATH_LIMIT: Duration = Duration::from_secs(30);

/// `every_fault`: every apply that may be disturbed gets a SIGHUP and (through the symlink) a
/// second apply, and the round changes the playbook at least once, whatever the seed.
pub(super) fn mixed_round(
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
