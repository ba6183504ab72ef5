#!/bin/sh
# Regenerates docs/night.md: a real terminal (tmux) running `runner apply` on
# playbooks/night.yaml through one night (a manual step answered, a stop by
# the window) and the resume the next evening, then an excerpt of the
# markdown review of playbooks/customers/acme.yaml.
#
#   scripts/capture-night.sh            # builds runner (debug) and writes docs/night.md
#   RUNNER=/path/to/runner scripts/capture-night.sh
#
# Needs tmux. Works in a temporary folder; nothing in playbooks/ is written.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
if [ -z "${RUNNER:-}" ]; then
    cargo build --quiet --bin runner
    RUNNER="$repo/target/debug/runner"
fi
command -v tmux >/dev/null || { echo "capture-night.sh needs tmux" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/runner-night.XXXXXX")
sock="runner-capture-$$"
cleanup() {
    tmux -L "$sock" kill-server 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
cp playbooks/night.yaml "$work/night.yaml"
mkdir -p "$work/bin"
ln -s "$RUNNER" "$work/bin/runner"

# The session the helpers below work on.
sess=night1

# Waits (at most about 60 s) until the session's screen shows $1.
wait_for() {
    i=0
    until tmux -L "$sock" capture-pane -p -t "$sess" | grep -qF -- "$1"; do
        i=$((i + 1))
        if [ "$i" -gt 600 ]; then
            echo "capture-night.sh: the screen never showed: $1" >&2
            tmux -L "$sock" capture-pane -p -t "$sess" >&2
            exit 1
        fi
        sleep 0.1
    done
}

# Runs `$1` in a fresh 100x32 terminal with a visible prompt; leaves the
# session open after it ends and says its exit code.
start() {
    tmux -L "$sock" new-session -d -s "$sess" -x 100 -y 32 \
        "cd '$work' && export PATH='$work/bin':\$PATH TZ=America/Chicago USER=ops PS1='$ ' && \
         printf '%s\n' '\$ $1' && $1; echo \"[exit code \$?]\"; sleep 3600"
}

# The whole pane, scrollback included, without trailing blanks; the temporary
# folder is shown as ~/mail-move.
screen() {
    tmux -L "$sock" capture-pane -p -J -S - -t "$sess" | tidy
}
tidy() {
    sed -e 's/[[:space:]]*$//' -e "s|$work|~/mail-move|g" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
}

# Night 1: Tuesday 05:40 in Chicago, business hours at 07:30 (margin 15m).
start "RUNNER_NOW=2026-12-08T05:40:00-06:00 runner apply night.yaml"
wait_for "Type \`done\`"
prompt=$(screen)
tmux -L "$sock" send-keys -t "$sess" -l "done"
tmux -L "$sock" send-keys -t "$sess" Enter
wait_for "[exit code"
night1=$(screen)

status=$(cd "$work" && RUNNER_NOW=2026-12-08T06:00:00-06:00 TZ=America/Chicago USER=ops \
    "$RUNNER" status night.yaml 2>&1 | tidy || true)

# Night 2: the same evening, 18:30, after business hours.
sess=night2
start "RUNNER_NOW=2026-12-08T18:30:00-06:00 runner apply night.yaml"
wait_for "[exit code"
night2=$(screen)

review=$("$RUNNER" plan playbooks/customers/acme.yaml --format markdown \
    --start 2026-12-11T18:30:00-06:00 2>/dev/null)
review_lines=$(printf '%s\n' "$review" | wc -l)
excerpt=$(printf '%s\n' "$review" | head -n 60)

fence='```'
{
    cat <<MD
# A night with runner, as the operator sees it

This page is generated: \`scripts/capture-night.sh\` runs \`runner apply\` in a real terminal
(tmux, 100x32) on [\`playbooks/night.yaml\`](../playbooks/night.yaml) and copies what the screen
shows (\`tmux capture-pane\`; its temporary folder is shown as \`~/mail-move\`). \`RUNNER_NOW\`
sets the customer's clock (America/Chicago): the clock starts there and runs in real time, so
the window decides as it would that night.

The playbook: a snapshot, a manual check of it, a two-hour mailbox move, and the switch of the
MX record (the point of no return). Business hours are Monday to Friday 07:30-18:00 with a
15-minute margin: no step starts unless its estimate ends before 07:15.

## Night 1: Tuesday 05:40, a manual step, then the window stops the run

The manual step waits for the operator; its instructions and the question stay on screen:

${fence}text
$prompt
${fence}

The operator typed \`done\`. The mailbox move (estimate 2h) would end after 07:15, so runner
records where it stands and stops with exit 3 (the window is closed), saying when it may go on:

${fence}text
$night1
${fence}

\`runner status night.yaml\` that morning:

${fence}text
$status
${fence}

## Night 2: Tuesday 18:30, the resume

The same command the next evening skips what the journal says is done and runs the rest:

${fence}text
$night2
${fence}

## The review the customer signs

The flagship's review, rendered by
\`runner plan playbooks/customers/acme.yaml --format markdown --start 2026-12-11T18:30:00-06:00\`
(the first 60 of its $review_lines lines; the rest lists every step with its command, check and
rollback, then the review warnings):

${fence}markdown
$excerpt
${fence}
MD
} > docs/night.md
echo "wrote docs/night.md"
