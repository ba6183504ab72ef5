#!/usr/bin/env bash
# Crash torture (not part of the test command): 50 rounds of `kill -9` at random moments
# during `runner apply` over three loopback sshd targets, resumed until done, then every
# promise checked against the ledgers on the targets. See tests/torture.rs.
#
#   ./scripts/torture.sh                         # 50 rounds, a new seed (printed)
#   TORTURE_SEED=1234 ./scripts/torture.sh       # replay the kill moments of a seed
#   TORTURE_ROUNDS=5 ./scripts/torture.sh        # a quick look
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/sbin/sshd ] || { echo "torture: /usr/sbin/sshd is required (apt-get install openssh-server)" >&2; exit 2; }
mkdir -p /run/sshd 2>/dev/null || true
# Release mode: the runner's timing then resembles production, so kills land where they would.
exec cargo test --release --locked --test it -- --ignored torture:: --nocapture "$@"
