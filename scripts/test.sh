#!/usr/bin/env bash
# The test command (README): installs what the tests need, then runs every test.
# The tests start their own OpenSSH servers on 127.0.0.x (and an SMTP server for the notification
# tests); this only makes sure sshd, the python3 that uploads use on the target, aiosmtpd and tmux
# (for the terminal tests) exist.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# The tests' sshd sessions run target-side tools from the system's PATH, not from a user's
# environment (pyenv and the like): uploads hash on the target with /usr/bin/python3.
PACKAGES=()
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null 2>&1; then
  PACKAGES+=(openssh-server openssh-client)
fi
[ -x /usr/bin/python3 ] || PACKAGES+=(python3)
# tests/terminal.rs closes a real terminal under a running apply (SIGHUP) with tmux.
command -v tmux >/dev/null 2>&1 || PACKAGES+=(tmux)
# The notification tests hand mail to a real SMTP server on loopback (aiosmtpd).
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || PACKAGES+=(python3-aiosmtpd)
# tests/it/serve/ loads the live page in a real headless browser.
command -v chromium >/dev/null 2>&1 || PACKAGES+=(chromium)
# The journal's PostgreSQL store is tested against a throwaway cluster (initdb, pg_ctl).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || PACKAGES+=(postgresql)
if [ "${#PACKAGES[@]}" -gt 0 ]; then
  echo "installing ${PACKAGES[*]} (the tests start real sshd processes on loopback)" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
fi
# sshd refuses to start without its privilege-separation directory.
if [ ! -d /run/sshd ]; then
  if [ "$(id -u)" -eq 0 ]; then mkdir -p /run/sshd; else sudo mkdir -p /run/sshd; fi
fi

cargo test --locked "$@"
# Tests that need root are #[ignore]d so that no test passes by not running; as root (CI),
# the full run runs them too.
if [ "$#" -eq 0 ] && [ "$(id -u)" -eq 0 ]; then
  cargo test --locked --test it -- --ignored --exact \
    cli_ping::ssh_password_authentication_logs_in_and_never_shows_the_password
fi
