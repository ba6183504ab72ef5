//! The check after a round: the promises, against the ledgers on every host each target was on
//! and against the journal (runs and successes counted on both sides, no step run twice or two
//! copies at once, one journal however the playbook was reached).

use super::*;

fn identity_matches(identity: Option<&str>, servers: &[Sshd], host: Option<usize>) -> bool {
    match (identity, host) {
        (Some(id), Some(h)) => {
            id.ends_with(&format!("@{}:{}", servers[h].host(), servers[h].port()))
        }
        (Some(id), None) => id == "local",
        (None, _) => false,
    }
}

/// The promises, against the ledgers on every host each target was on, and the journal.
pub(super) fn mixed_check(m: &Mixed, servers: &[Sshd], n: u32, c: &mut MixedCounts) {
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
