#!/usr/bin/env bash
# The test command (README): installs what the tests need, then runs every test.
# The tests start their own OpenSSH servers on 127.0.0.x; this only makes sure sshd exists.
set -euo pipefail
cd "$(dirname "$0")/.."

need_sshd() { [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null 2>&1; }
if need_sshd; then
  echo "installing openssh-server (the tests start real sshd processes on loopback)" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openssh-server openssh-client >/dev/null
fi
# sshd refuses to start without its privilege-separation directory.
if [ ! -d /run/sshd ]; then
  if [ "$(id -u)" -eq 0 ]; then mkdir -p /run/sshd; else sudo mkdir -p /run/sshd; fi
fi

cargo test --locked "$@"
