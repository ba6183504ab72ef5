#!/usr/bin/env bash
# Benchmarks: runner against OpenSSH and Ansible, side by side, on this machine, over loopback.
#
#   ./scripts/bench.sh            # RUNS=5 by default; RUNS=3 ./scripts/bench.sh for a quick look
#
# It builds runner in release mode, starts 20 throwaway sshd servers on 127.0.1.1-20 (fresh
# keys, private config, like the tests), installs ansible-core into a virtualenv under a temp
# folder (from PyPI), and prints the median of RUNS runs per scenario (runner and its baseline
# take turns) and the ratio runner/baseline (below 1 means runner is faster). Everything it
# starts is stopped and everything it writes is removed on exit. Not part of the test command.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
# Ansible takes a minute per run of 200 tasks: fewer runs keep the whole script short.
ANSIBLE_RUNS=${ANSIBLE_RUNS:-3}
HOSTS=20
STEPS=200
PLAN_STEPS=2000
UPLOAD_MIB=${UPLOAD_MIB:-512}
# fanout500: this many targets on the $HOSTS servers, each server listed under several target
# names (500 sshd processes would be more than a 2-core machine can start and keep).
FANOUT=${FANOUT:-500}
# pg100: one step on this many targets, journal on PostgreSQL against SQLite.
PG_TARGETS=${PG_TARGETS:-100}
# A subset, e.g. SCENARIOS="seq upload" (profiling one thing), or "fanout500,pg100,background".
SCENARIOS=${SCENARIOS:-"seq fan rss serve upload plan fanout500 pg100 background"}
SCENARIOS=${SCENARIOS//,/ }
want() { case " $SCENARIOS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

need() { command -v "$1" >/dev/null 2>&1 || { echo "bench: $1 is required" >&2; exit 2; }; }
need ssh
need scp
need ssh-keygen
need python3
[ -x /usr/sbin/sshd ] || { echo "bench: /usr/sbin/sshd is required (apt-get install openssh-server)" >&2; exit 2; }
mkdir -p /run/sshd 2>/dev/null || true

WORK=$(mktemp -d "${TMPDIR:-/tmp}/runner-bench.XXXXXX")
PIDS=()
BENCH_USER=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "$BENCH_USER" ] && userdel -f "$BENCH_USER" 2>/dev/null || true
  [ -S "$WORK/cm.sock" ] && ssh -F "$WORK/ssh_config" -S "$WORK/cm.sock" -O exit h1 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
log "building runner (release)"
cargo build --release --locked --quiet
TARGET_DIR=${CARGO_TARGET_DIR:-target}
RUNNER=$(cd "$TARGET_DIR/release" && pwd)/runner
[ -x "$RUNNER" ] || { echo "bench: $RUNNER was not built" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
log "starting $HOSTS sshd servers on 127.0.1.1-$HOSTS"
ssh-keygen -q -t ed25519 -N "" -C "bench host" -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N "" -C "bench user" -f "$WORK/id_ed25519"
cp "$WORK/id_ed25519.pub" "$WORK/authorized_keys"
chmod 600 "$WORK/authorized_keys"
# The servers log in a throwaway account whose login shell is a plain /bin/sh. sshd runs every
# command through the login shell, and an interactive setup (bash sourcing a .bashrc that
# initialises pyenv, nvm, ...) would add its own startup time to every step of every tool,
# hiding the differences this measures. Without root, the current account is used.
if [ "$(id -u)" -eq 0 ]; then
  BENCH_USER=rbench$$
  mkdir -p "$WORK/home"
  useradd --system --no-create-home --home-dir "$WORK/home" --shell /bin/sh -p '*' "$BENCH_USER"
  chown "$BENCH_USER" "$WORK/home"
  chmod 755 "$WORK"
  chmod 644 "$WORK/authorized_keys"
  USER_NAME=$BENCH_USER
else
  USER_NAME=$(id -un)
  log "note: not root, so the servers log in as $USER_NAME: its login shell's startup files count in every step"
fi
HOST_PUB=$(cut -d' ' -f1-2 "$WORK/host_key.pub")

# A port that is free on 127.0.1.1; every server uses the same port on its own address.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.1.1",0)); print(s.getsockname()[1])')
: > "$WORK/known_hosts"
for i in $(seq 1 "$HOSTS"); do
  ip=127.0.1.$i
  cfg=$WORK/sshd_$i.conf
  cat > "$cfg" <<EOF
ListenAddress $ip:$PORT
HostKey $WORK/host_key
PidFile $WORK/sshd_$i.pid
AuthorizedKeysFile $WORK/authorized_keys
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp
LogLevel ERROR
EOF
  /usr/sbin/sshd -D -e -f "$cfg" 2>"$WORK/sshd_$i.log" &
  PIDS+=($!)
  echo "[$ip]:$PORT $HOST_PUB" >> "$WORK/known_hosts"
done
cat > "$WORK/ssh_config" <<EOF
Host h*
  User $USER_NAME
  Port $PORT
  IdentityFile $WORK/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $WORK/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
EOF
for i in $(seq 1 "$HOSTS"); do
  printf 'Host h%s\n  HostName 127.0.1.%s\n' "$i" "$i" >> "$WORK/ssh_config"
done
# Wait until every server answers (sshd -D has no other readiness signal we can wait on).
for i in $(seq 1 "$HOSTS"); do
  for _ in $(seq 1 100); do
    ssh -F "$WORK/ssh_config" "h$i" true 2>/dev/null && break
    sleep 0.1
  done
  ssh -F "$WORK/ssh_config" "h$i" true || { cat "$WORK/sshd_$i.log" >&2; exit 1; }
done

# ---------------------------------------------------------------------------------------------
ANSIBLE_PLAYBOOK=$WORK/venv/bin/ansible-playbook
ANSIBLE_VERSION="no ansible (ANSIBLE_RUNS=0)"
if [ "$ANSIBLE_RUNS" -gt 0 ]; then
log "installing ansible-core into a virtualenv"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet --disable-pip-version-check ansible-core >"$WORK/pip.log" 2>&1 \
  || { cat "$WORK/pip.log" >&2; exit 1; }
ANSIBLE_VERSION=$("$WORK/venv/bin/ansible" --version 2>/dev/null | sed -n 1p || true)
fi
export ANSIBLE_CONFIG=$WORK/ansible.cfg
cat > "$ANSIBLE_CONFIG" <<EOF
[defaults]
host_key_checking = True
interpreter_python = /usr/bin/python3
forks = $HOSTS
stdout_callback = default
retry_files_enabled = False
[ssh_connection]
pipelining = True
ssh_args = -F $WORK/ssh_config -o ControlMaster=auto -o ControlPersist=60s
control_path_dir = $WORK/cp
EOF
{
  echo "[all]"
  for i in $(seq 1 "$HOSTS"); do echo "h$i"; done
} > "$WORK/inventory"

# ---------------------------------------------------------------------------------------------
# Playbooks.
mkdir -p "$WORK/pb" "$WORK/dest"
[ -n "$BENCH_USER" ] && chown "$BENCH_USER" "$WORK/dest"
targets_yaml() {
  echo "targets:"
  for i in $(seq 1 "$1"); do
    cat <<EOF
  h$i:
    transport: ssh
    host: 127.0.1.$i
    port: $PORT
    user: $USER_NAME
    key: $WORK/id_ed25519
    known_hosts: $WORK/known_hosts
EOF
  done
}
header() { printf 'name: %s\nwindow:\n  business_hours: []\n' "$1"; }
# many_targets N: N targets named t1..tN spread over the $HOSTS servers (target k on server
# ((k-1) % HOSTS) + 1): distinct targets, several to a server.
many_targets() {
  echo "targets:"
  for k in $(seq 1 "$1"); do
    cat <<EOF
  t$k:
    transport: ssh
    host: 127.0.1.$(( (k - 1) % HOSTS + 1 ))
    port: $PORT
    user: $USER_NAME
    key: $WORK/id_ed25519
    known_hosts: $WORK/known_hosts
EOF
  done
}
many_playbook() { # many_playbook NAME N
  header "$1"
  many_targets "$2"
  echo "steps:"
  printf '  - { id: fan, on: [%s], run: "true", idempotent: true }\n' "$(seq -s, -f 't%g' 1 "$2")"
}

{
  header "200 trivial steps"
  targets_yaml 1
  echo "steps:"
  for n in $(seq 1 "$STEPS"); do printf '  - { id: s%s, on: h1, run: "true", idempotent: true }\n' "$n"; done
} > "$WORK/pb/seq.yaml"
{
  echo "- hosts: h1"
  echo "  gather_facts: false"
  echo "  tasks:"
  for n in $(seq 1 "$STEPS"); do printf '    - command: /bin/true\n'; done
} > "$WORK/seq-ansible.yaml"

{
  header "one step on $HOSTS hosts"
  targets_yaml "$HOSTS"
  echo "steps:"
  printf '  - { id: fan, on: [%s], run: "true", idempotent: true }\n' \
    "$(seq -s, -f 'h%g' 1 "$HOSTS")"
} > "$WORK/pb/fan.yaml"
printf -- '- hosts: all\n  gather_facts: false\n  tasks:\n    - command: /bin/true\n' > "$WORK/fan-ansible.yaml"

many_playbook "one step on $FANOUT targets" "$FANOUT" > "$WORK/pb/fanout.yaml"
for k in $(seq 1 "$FANOUT"); do echo "h$(( (k - 1) % HOSTS + 1 ))"; done > "$WORK/fanout-hosts"
mkdir -p "$WORK/pg100" "$WORK/sq100"
many_playbook "one step on $PG_TARGETS targets" "$PG_TARGETS" > "$WORK/pg100/pg100.yaml"
cp "$WORK/pg100/pg100.yaml" "$WORK/sq100/pg100.yaml"

log "writing a $UPLOAD_MIB MiB file"
want upload && head -c "$((UPLOAD_MIB * 1024 * 1024))" /dev/urandom > "$WORK/pb/big.bin"
{
  header "upload"
  targets_yaml 1
  echo "steps:"
  printf '  - { id: up, on: h1, upload: { src: big.bin, dest: %s/dest/big-runner.bin }, idempotent: true }\n' "$WORK"
} > "$WORK/pb/upload.yaml"

{
  header "2000 steps"
  targets_yaml 4
  echo "steps:"
  for n in $(seq 1 "$PLAN_STEPS"); do
    printf '  - { id: s%s, on: h%s, run: "echo step %s on {{ target.name }}", check: "test -e /tmp", estimate: 1s, idempotent: true }\n' \
      "$n" "$(( (n % 4) + 1 ))" "$n"
  done
} > "$WORK/pb/plan.yaml"

# ---------------------------------------------------------------------------------------------
# Timing: each run prints its wall time in milliseconds; median of the runs.
ms_now() { date +%s%N; }
time_ms() {
  local t0 t1
  t0=$(ms_now)
  "$@" >"$WORK/last.out" 2>&1 || { log "failed: $*"; cat "$WORK/last.out" >&2; exit 1; }
  t1=$(ms_now)
  echo $(( (t1 - t0) / 1000000 ))
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%d\n", (a[NR/2]+a[NR/2+1])/2}'; }
repeat() { # repeat N SETUP CMD...: median wall time of N runs of CMD, SETUP before each
  local n=$1 setup=$2; shift 2
  for _ in $(seq 1 "$n"); do $setup; time_ms "$@"; done | median
}
# alternate N SETUP_A CMD_A SETUP_B CMD_B: runs A and B in turn, N times each, and prints
# "median_A median_B". Taking turns means load that drifts during a scenario weighs on both.
alternate() {
  local n=$1 setup_a=$2 cmd_a=$3 setup_b=$4 cmd_b=$5 times
  times=$(for _ in $(seq 1 "$n"); do
    $setup_a; echo "a $(time_ms "$cmd_a")"
    $setup_b; echo "b $(time_ms "$cmd_b")"
  done)
  echo "$(awk '$1 == "a" {print $2}' <<<"$times" | median) $(awk '$1 == "b" {print $2}' <<<"$times" | median)"
}
nothing() { :; }
fresh_state() { rm -rf "$WORK/pb/.runner" "$WORK"/dest/*; }

# PERF_CMD="perf record -g -o /tmp/perf.data" profiles the runner's side of a scenario.
runner_apply() { ${PERF_CMD:-} "$RUNNER" apply "$1" --quiet --max-parallel "$HOSTS"; }
runner_seq() { runner_apply "$WORK/pb/seq.yaml"; }
runner_fan() { runner_apply "$WORK/pb/fan.yaml"; }
runner_upload() { runner_apply "$WORK/pb/upload.yaml"; }
cm_loop() {
  ssh -F "$WORK/ssh_config" -o ControlMaster=yes -o ControlPath="$WORK/cm.sock" -fN h1
  for _ in $(seq 1 "$STEPS"); do ssh -F "$WORK/ssh_config" -o ControlPath="$WORK/cm.sock" h1 true; done
  ssh -F "$WORK/ssh_config" -o ControlPath="$WORK/cm.sock" -O exit h1 2>/dev/null
}
parallel_ssh() {
  local pids=()
  for i in $(seq 1 "$HOSTS"); do ssh -F "$WORK/ssh_config" "h$i" true & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; done
}
ansible_seq() { "$ANSIBLE_PLAYBOOK" -i "$WORK/inventory" "$WORK/seq-ansible.yaml"; }
ansible_fan() { "$ANSIBLE_PLAYBOOK" -i "$WORK/inventory" -f "$HOSTS" "$WORK/fan-ansible.yaml"; }
scp_up() { scp -q -F "$WORK/ssh_config" "$WORK/pb/big.bin" "h1:$WORK/dest/big-scp.bin"; }
validate_plan() {
  "$RUNNER" validate "$WORK/pb/plan.yaml" && "$RUNNER" plan "$WORK/pb/plan.yaml" --start 2026-12-01T00:00:00Z
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
ROWS=()
row() { ROWS+=("$(printf '| %s | %s | %s | %s | %s |' "$1" "$2" "$3" "$4" "$5")"); }

# ---------------------------------------------------------------------------------------------
if want seq; then
log "scenario 1: $STEPS sequential steps on one host ($RUNS runs; ansible $ANSIBLE_RUNS)"
read -r r_seq c_seq < <(alternate "$RUNS" fresh_state runner_seq nothing cm_loop)
row "$STEPS steps, one host" "runner apply: $r_seq ms ($(ratio "$r_seq" "$STEPS") ms/step)" \
  "ssh loop via ControlMaster" "$c_seq ms ($(ratio "$c_seq" "$STEPS") ms/step)" "$(ratio "$r_seq" "$c_seq")"
if [ "$ANSIBLE_RUNS" -gt 0 ]; then
  a_seq=$(repeat "$ANSIBLE_RUNS" nothing ansible_seq)
  row "$STEPS steps, one host" "runner apply: $r_seq ms" \
    "ansible-playbook, pipelining" "$a_seq ms ($(ratio "$a_seq" "$STEPS") ms/step)" "$(ratio "$r_seq" "$a_seq")"
fi
fi

if want fan; then
log "scenario 2: one step on $HOSTS hosts"
read -r r_fan p_fan < <(alternate "$RUNS" fresh_state runner_fan nothing parallel_ssh)
row "one step, $HOSTS hosts" "runner apply: $r_fan ms" "parallel ssh (new connections)" "$p_fan ms" "$(ratio "$r_fan" "$p_fan")"
if [ "$ANSIBLE_RUNS" -gt 0 ]; then
  a_fan=$(repeat "$ANSIBLE_RUNS" nothing ansible_fan)
  row "one step, $HOSTS hosts" "runner apply: $r_fan ms" "ansible-playbook, forks=$HOSTS" "$a_fan ms" "$(ratio "$r_fan" "$a_fan")"
fi
fi

if want rss; then
log "peak memory of runner in the $HOSTS-host fan-out"
fresh_state
if [ -x /usr/bin/time ]; then
  /usr/bin/time -v "$RUNNER" apply "$WORK/pb/fan.yaml" --quiet --max-parallel "$HOSTS" 2>"$WORK/time.txt" >/dev/null
  rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
else
  # No GNU time: sample VmHWM (the kernel's peak RSS) until the process exits.
  "$RUNNER" apply "$WORK/pb/fan.yaml" --quiet --max-parallel "$HOSTS" >/dev/null 2>&1 &
  rp=$!; rss_kib=0
  while kill -0 "$rp" 2>/dev/null; do
    v=$(awk '/VmHWM/ {print $2}' "/proc/$rp/status" 2>/dev/null || echo 0)
    [ "${v:-0}" -gt "$rss_kib" ] && rss_kib=$v
    sleep 0.01
  done
  wait "$rp"
fi
row "peak RSS, $HOSTS-host fan-out" "runner: $(ratio "$rss_kib" 1024) MiB" "target" "50 MiB" "$(ratio "$rss_kib" 51200)"
fi

if want serve; then
log "peak memory of runner serve showing 10 cutovers of $STEPS steps, with 3 pages open"
mkdir -p "$WORK/serve"
for c in $(seq 1 10); do
  sed "s/^name: .*/name: cutover $c/" "$WORK/pb/seq.yaml" > "$WORK/serve/c$c.yaml"
  "$RUNNER" apply "$WORK/serve/c$c.yaml" --quiet >/dev/null
done
"$RUNNER" serve "$WORK"/serve/c*.yaml --listen 127.0.0.1:0 > "$WORK/serve/out.txt" &
sp=$!; PIDS+=("$sp")
until grep -q '^serving on' "$WORK/serve/out.txt" 2>/dev/null; do
  kill -0 "$sp" 2>/dev/null || { echo "bench: runner serve did not start" >&2; exit 1; }
  sleep 0.05
done
addr=$(sed -n 's#^serving on http://\(.*\)/$#\1#p' "$WORK/serve/out.txt")
# Three pages following the live stream while tools read the JSON and every report.
cpids=()
for k in 1 2 3; do python3 - "$addr" <<'PY' &
import sys, urllib.request
with urllib.request.urlopen(f"http://{sys.argv[1]}/events", timeout=30) as r:
    for _ in range(6):
        r.readline()
PY
  cpids+=($!)
done
for c in $(seq 1 10); do
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1]).read()' "http://$addr/api/status"
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1]).read()' "http://$addr/report/$c"
done
for p in "${cpids[@]}"; do wait "$p" 2>/dev/null || true; done
serve_kib=$(awk '/VmHWM/ {print $2}' "/proc/$sp/status")
kill "$sp"; wait "$sp" 2>/dev/null || true
row "peak RSS, serve 10 cutovers" "runner serve: $(ratio "$serve_kib" 1024) MiB" "target" "30 MiB" "$(ratio "$serve_kib" 30720)"
fi

if want upload; then
log "scenario 3: upload of $UPLOAD_MIB MiB"
read -r r_up s_up < <(alternate "$RUNS" fresh_state runner_upload nothing scp_up)
cmp "$WORK/pb/big.bin" "$WORK/dest/big-scp.bin"
row "upload $UPLOAD_MIB MiB" "runner: $r_up ms ($(ratio $((UPLOAD_MIB * 1000)) "$r_up") MiB/s, SHA-256 verified)" \
  "scp" "$s_up ms ($(ratio $((UPLOAD_MIB * 1000)) "$s_up") MiB/s)" "$(ratio "$r_up" "$s_up")"
fi

if want plan; then
log "scenario 4: validate + plan of $PLAN_STEPS steps"
v_plan=$(repeat "$RUNS" nothing "$RUNNER" validate "$WORK/pb/plan.yaml")
p_plan=$(repeat "$RUNS" nothing "$RUNNER" plan "$WORK/pb/plan.yaml" --start 2026-12-01T00:00:00Z)
b_plan=$(repeat "$RUNS" nothing validate_plan)
row "$PLAN_STEPS-step playbook" "validate $v_plan ms, plan $p_plan ms" "validate + plan" "$b_plan ms" "target 200 ms: $(ratio "$p_plan" 200)"
fi

if want fanout500; then
log "scenario fanout500: one step on $FANOUT targets ($HOSTS sshd servers, each $(( FANOUT / HOSTS )) times)"
runner_fanout() { "$RUNNER" apply "$WORK/pb/fanout.yaml" --quiet --max-parallel "$FANOUT"; }
# The same fan-out with OpenSSH: one new connection per target, all at once.
xargs_ssh() { xargs -P "$FANOUT" -I{} ssh -F "$WORK/ssh_config" {} true < "$WORK/fanout-hosts"; }
read -r r_fo p_fo < <(alternate "$RUNS" fresh_state runner_fanout nothing xargs_ssh)
# Peak RSS (the kernel's VmHWM) and open files of one more runner run, sampled.
fresh_state
"$RUNNER" apply "$WORK/pb/fanout.yaml" --quiet --max-parallel "$FANOUT" >"$WORK/last.out" 2>&1 &
rp=$!; fo_kib=0; fo_files=0
while kill -0 "$rp" 2>/dev/null; do
  v=$(awk '/VmHWM/ {print $2}' "/proc/$rp/status" 2>/dev/null || true)
  [ "${v:-0}" -gt "$fo_kib" ] && fo_kib=$v
  f=$(ls "/proc/$rp/fd" 2>/dev/null | wc -l)
  [ "$f" -gt "$fo_files" ] && fo_files=$f
  sleep 0.01
done
wait "$rp" || { cat "$WORK/last.out" >&2; exit 1; }
row "one step, $FANOUT targets on $HOSTS sshd" "runner apply: $r_fo ms" "parallel ssh (xargs -P $FANOUT)" "$p_fo ms" \
  "$(ratio "$r_fo" "$p_fo") (goal 0.3)"
row "peak RSS, $FANOUT-target fan-out" "runner: $(ratio "$fo_kib" 1024) MiB, at most $fo_files open files" \
  "goal" "150 MiB" "$(ratio "$fo_kib" 153600)"
if [ "$ANSIBLE_RUNS" -gt 0 ]; then
  # Ansible with one fork per target. Each target is its own inventory host (t1..t500, reached
  # through the server aliases), and ControlMaster is off: with it, the 25 names of one server
  # would share a connection, which 500 real machines could not.
  { echo "[all]"; k=0; while read -r h; do k=$((k + 1)); echo "t$k ansible_host=$h"; done \
      < "$WORK/fanout-hosts"; } > "$WORK/fanout-inventory"
  ansible_fanout() {
    ANSIBLE_SSH_ARGS="-F $WORK/ssh_config -o ControlMaster=no" \
      "$ANSIBLE_PLAYBOOK" -i "$WORK/fanout-inventory" -f "$FANOUT" "$WORK/fan-ansible.yaml"
  }
  a_fo=$(repeat "$ANSIBLE_RUNS" nothing ansible_fanout)
  row "one step, $FANOUT targets on $HOSTS sshd" "runner apply: $r_fo ms" "ansible-playbook, forks=$FANOUT" \
    "$a_fo ms" "$(ratio "$r_fo" "$a_fo")"
fi
fi

if want pg100; then
log "scenario pg100: one step on $PG_TARGETS targets, journal on PostgreSQL against SQLite"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "bench: PostgreSQL is required for pg100 (apt-get install postgresql)" >&2; exit 2; }
# A throwaway cluster, as the tests start one: run by an unprivileged account in a temp folder,
# its socket trusted, TCP on loopback with a password.
PGDIR=$WORK/pg
mkdir -p "$PGDIR"
PG_PASSWORD=bench-$$
echo "$PG_PASSWORD" > "$PGDIR/pw"
pg_as() { if [ "$(id -u)" -eq 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }
if [ "$(id -u)" -eq 0 ]; then chown -R nobody "$PGDIR"; chmod 755 "$WORK"; fi
PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pg_as "$PGBIN/initdb" -D "$PGDIR/data" -U runner --auth-local=trust --auth-host=scram-sha-256 \
  --pwfile="$PGDIR/pw" --no-sync --no-instructions >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; exit 1; }
pg_as "$PGBIN/pg_ctl" -D "$PGDIR/data" -o "-c listen_addresses=127.0.0.1 -c port=$PGPORT -c unix_socket_directories=$PGDIR" \
  -l "$PGDIR/log" -w start >/dev/null
pg_stop() { pg_as "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate -w stop >/dev/null 2>&1 || true; }
trap 'pg_stop; cleanup' EXIT
PG_DB=0
# Each PostgreSQL run starts from an empty database, as each SQLite run from no file.
fresh_pg() { PG_DB=$((PG_DB + 1)); pg_as "$PGBIN/createdb" -h "$PGDIR" -p "$PGPORT" -U runner "b$PG_DB"; }
runner_pg() {
  PGPASSWORD=$PG_PASSWORD "$RUNNER" apply "$WORK/pg100/pg100.yaml" --quiet --max-parallel "$PG_TARGETS" \
    --state "postgres://runner@127.0.0.1:$PGPORT/b$PG_DB"
}
fresh_sqlite() { rm -rf "$WORK/sq100/.runner"; }
runner_sqlite() { "$RUNNER" apply "$WORK/sq100/pg100.yaml" --quiet --max-parallel "$PG_TARGETS"; }
read -r r_pg r_sq < <(alternate "$RUNS" fresh_pg runner_pg fresh_sqlite runner_sqlite)
row "one step, $PG_TARGETS targets, journal on PostgreSQL" "runner apply: $r_pg ms" "the same on SQLite" "$r_sq ms" \
  "$(ratio "$r_pg" "$r_sq") (goal 1.5)"
fi

if want background; then
log "scenario background: $STEPS steps on one host, apply --background until the run ends, against apply"
# The background run, waited for as an operator would: `status --follow` ends with the run.
runner_bg() { "$RUNNER" apply "$WORK/pb/seq.yaml" --background && "$RUNNER" status "$WORK/pb/seq.yaml" --follow; }
read -r r_bg r_fg < <(alternate "$RUNS" fresh_state runner_bg fresh_state runner_seq)
row "$STEPS steps, one host, --background" "runner apply --background: $r_bg ms ($(ratio "$r_bg" "$STEPS") ms/step)" \
  "runner apply (foreground)" "$r_fg ms ($(ratio "$r_fg" "$STEPS") ms/step)" "$(ratio "$r_bg" "$r_fg") (goal 1.0)"
# The run itself, as its journal records it (start to end): without the start of the detached
# process and without `--follow`'s redraw interval.
journal_run_ms() {
  python3 - "$WORK/pb/.runner/seq.db" <<'PY'
import re, sqlite3, sys
from datetime import datetime
def t(s):
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", s)
    return datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").timestamp() + float("0." + (m.group(2) or "0"))
a, b = sqlite3.connect(sys.argv[1]).execute("select started_at, ended_at from runs order by seq desc limit 1").fetchone()
print(round((t(b) - t(a)) * 1000))
PY
}
times=$(for _ in $(seq 1 "$RUNS"); do
  fresh_state; runner_bg >/dev/null 2>&1; echo "b $(journal_run_ms)"
  fresh_state; runner_seq >/dev/null 2>&1; echo "f $(journal_run_ms)"
done)
j_bg=$(awk '$1 == "b" {print $2}' <<<"$times" | median)
j_fg=$(awk '$1 == "f" {print $2}' <<<"$times" | median)
row "$STEPS steps, one host, --background, as the journal records the run" "background run: $j_bg ms ($(ratio "$j_bg" "$STEPS") ms/step)" \
  "foreground run" "$j_fg ms ($(ratio "$j_fg" "$STEPS") ms/step)" "$(ratio "$j_bg" "$j_fg") (goal 1.0)"
fi

# ---------------------------------------------------------------------------------------------
echo
echo "runner $("$RUNNER" --version | awk '{print $2}'), $(ssh -V 2>&1 | cut -d, -f1), $ANSIBLE_VERSION, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "median of $RUNS runs (ansible: $ANSIBLE_RUNS); ratio = runner / baseline"
if want fanout500; then
  echo "fanout500: $FANOUT targets on $HOSTS sshd processes, each listed $(( FANOUT / HOSTS )) times (distinct target names, same address and port)"
fi
echo
echo "| scenario | runner | baseline | baseline time | ratio |"
echo "|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
