#!/usr/bin/env bash
# Crash torture (not part of the test command), see tests/it/torture/. Two modes:
#   kill   25 rounds of `kill -9` at random moments during `runner apply` over three loopback
#          sshd targets, resumed until done, every promise checked against the ledgers;
#   mixed  15 rounds that mix, over three sshd targets and a local one: renamed steps and
#          targets and targets moved to another sshd host between applies (exit 4, then the
#          operator's `runner mark` or `--accept-changed`), SIGHUP (the run goes on), SIGTERM,
#          `kill -9` (local commands die with the runner), the playbook reached through a
#          symlink and a second apply through the other path (the lock holds); the ledgers on
#          every host a target was on must show each non-idempotent step exactly once per
#          decided run, never two runs overlapping, and agree with the journal.
#
#   ./scripts/torture.sh                         # both modes, a new seed (printed)
#   TORTURE_SEED=1234 ./scripts/torture.sh       # replay the fault moments of a seed (or SEED=1234)
#   TORTURE_ROUNDS=5 ./scripts/torture.sh        # a quick look (rounds of each mode)
#   TORTURE_MODE=mixed ./scripts/torture.sh      # one mode: kill, mixed, or smoke (two mixed
#                                                # rounds with a fixed seed)
#   TORTURE_DEBUG=1 ./scripts/torture.sh         # reuse the debug build instead of --release
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/sbin/sshd ] || { echo "torture: /usr/sbin/sshd is required (apt-get install openssh-server)" >&2; exit 2; }
mkdir -p /run/sshd 2>/dev/null || true
case "${TORTURE_MODE:-all}" in
  all) tests=(kill_nine::kill_nine_and_resume_until_done mixed::mixed_faults_never_run_twice) ;;
  kill) tests=(kill_nine::kill_nine_and_resume_until_done) ;;
  mixed) tests=(mixed::mixed_faults_never_run_twice) ;;
  smoke) tests=(mixed::mixed_faults_smoke) ;;
  *) echo "torture: TORTURE_MODE is all, kill, mixed or smoke" >&2; exit 2 ;;
esac
# Release mode: the runner's timing then resembles production, so kills land where they would.
profile=(--release)
[ -n "${TORTURE_DEBUG:-}" ] && profile=()
# One seed for both modes, so that a failing run can be replayed.
export TORTURE_SEED="${TORTURE_SEED:-${SEED:-$(date +%s%N)}}"
# One test at a time: each one's timing is its own, and the machine is not shared with itself.
exec cargo test "${profile[@]}" --locked --test it -- --ignored --nocapture --exact \
  --test-threads=1 "${tests[@]/#/torture::}" "$@"
