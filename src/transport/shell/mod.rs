//! How a script becomes a command line, per shell. Pure functions: everything that quotes,
//! encodes or parses shell text lives here so it can be tested without a target.

use base64::Engine as _;

use super::{Secret, Shell};

/// First bytes of the line a tracked command prints on stderr to report the PID of its shell.
/// Starts with ASCII RS (0x1e) so that it cannot be confused with anything a login script
/// prints before it; [`PidMarkerFilter`] removes the line from the stream the user sees.
pub const PID_MARKER: &str = "\u{1e}runner-pid:";

/// Environment variable that carries the per-run token of a `cmd` command over SSH; the token
/// is how the process is found again to stop it (cmd cannot report its own PID).
pub const CMD_TOKEN_VAR: &str = "RUNNER_RUN";

/// `$0` of the `sh` wrapper is this followed by the per-run token.
const ORPHAN_TAG: &str = "runner-";

/// What to run: script text, or a script file already on the target.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    Inline(&'a str),
    File(&'a str),
}

/// Quote `s` as one word for a POSIX shell. Single quotes keep everything literal (`$`, `` ` ``,
/// `\`, newlines); a single quote itself is closed, escaped and reopened.
pub fn sh_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quote `s` as a PowerShell single-quoted string. PowerShell also treats the typographic
/// single quotes as quote characters, so those are doubled too.
pub fn ps_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The argument of `-EncodedCommand`: base64 of the script's UTF-16LE bytes. This sidesteps
/// every layer of Windows command-line quoting.
pub fn powershell_encode(script: &str) -> String {
    let bytes: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

const POWERSHELL: &str = "powershell.exe -NoProfile -NonInteractive";

/// The plain command line that runs `script`, as documented for playbooks:
/// `sh -c '<script>'`, `cmd.exe /c <script>`, or PowerShell with `-EncodedCommand`.
pub fn command_line(shell: Shell, script: &str) -> String {
    match shell {
        Shell::Sh => format!("sh -c {}", sh_quote(script)),
        Shell::Cmd => format!("cmd.exe /c {script}"),
        Shell::PowerShell => format!("{POWERSHELL} -EncodedCommand {}", powershell_encode(script)),
    }
}

/// The `sh` wrapper of a tracked command as three arguments for `sh -c`: the wrapper script,
/// its `$0` (`runner-` and the token, which is how the process is found again), and `$1`
/// (the inline script, or the path of the script file).
///
/// It reports its PID (the process group of everything the script starts) on stderr as
/// [`PID_MARKER`] first. An inline script runs untouched, with stdin from /dev/null, in a
/// subshell of the wrapper (`eval` in `( )`): it behaves as under `sh -c` (its own variables,
/// traps, `exit` and `set -e`; no positional parameters; only `$0`, the token, differs) but
/// costs a fork instead of starting another `sh`. A script file runs as `sh FILE` and is
/// removed by the watcher when the wrapper's stdin ends first.
pub fn tracked_sh_args(payload: Payload<'_>, token: &str) -> [String; 3] {
    tracked_sh_args_with_input(payload, token, false)
}

/// The lines [`tracked_sh_args_with_input`]'s wrapper reads from its standard input before
/// the command starts: `NAME=VALUE` per environment variable, `<VALUE` for what the command
/// reads on its stdin, then an empty line. In a VALUE, `\` is written `\\`, a newline `\n` and
/// a carriage return `\r` (the wrapper decodes them with `printf %b`, a builtin). Held as a
/// [`Secret`] so it is zeroed when dropped.
pub fn input_block(env: &[(String, Secret)], stdin: Option<&Secret>) -> Secret {
    fn enc(v: &str, out: &mut String) {
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
        out.push('\n');
    }
    let mut out = String::new();
    for (name, value) in env {
        out.push_str(name);
        out.push('=');
        enc(value.expose(), &mut out);
    }
    if let Some(v) = stdin {
        out.push('<');
        enc(v.expose(), &mut out);
    }
    out.push('\n');
    Secret::new(out)
}

/// [`tracked_sh_args`]; with `input`, the wrapper first reads an [`input_block`] from its
/// standard input: it exports the variables (`export` is a builtin: no value is ever in a
/// command line) and pipes the stdin value, with a newline, into the command, whose standard
/// input otherwise is /dev/null.
pub fn tracked_sh_args_with_input(payload: Payload<'_>, token: &str, input: bool) -> [String; 3] {
    // The runner removes a script file after the script; when the runner is gone, the
    // watcher does (an open file can be removed while `sh` still reads it).
    let (run, cleanup) = match payload {
        Payload::Inline(_) => ("( eval \"set --\n$1\" )", ""),
        Payload::File(_) => ("sh \"$1\"", "rm -f -- \"$1\"; "),
    };
    // A watcher holds the channel's stdin (runner never closes it): when the channel
    // goes away because the runner died, the watcher (a shell builtin loop, no extra
    // process) reads EOF and stops the whole process group, so no command outlives the
    // runner that started it. When the script ends normally the watcher is disarmed
    // first. Background jobs of a non-interactive shell get /dev/null as stdin, hence
    // the detour through fd 3.
    let (read_input, run) = if input {
        (
            "_i=\n\
             _s=\n\
             while IFS= read -r _l && [ -n \"$_l\" ]; do\n\
             case $_l in\n\
             '<'*) _i=$(printf '%bx' \"${_l#?}\"); _i=${_i%x}; _s=1 ;;\n\
             *) _v=$(printf '%bx' \"${_l#*=}\"); export \"${_l%%=*}=${_v%x}\" ;;\n\
             esac\n\
             done\n\
             unset _l _v\n",
            if run.starts_with('(') {
                "if [ -n \"$_s\" ]; then printf '%s\\n' \"$_i\" | ( unset _i _s; eval \"set --\n$1\" ); else ( unset _i _s; eval \"set --\n$1\" ) </dev/null; fi"
            } else {
                "if [ -n \"$_s\" ]; then printf '%s\\n' \"$_i\" | sh \"$1\"; else sh \"$1\" </dev/null; fi"
            },
        )
    } else {
        ("", run)
    };
    let stdin_redirect = if input { "" } else { " </dev/null" };
    let wrapper = format!(
        "printf '\\036runner-pid:%s\\n' \"$$\" >&2 || exit 125\n\
         {read_input}\
         exec 3<&0\n\
         ( while read -r _; do :; done <&3; {cleanup}kill -s TERM -- -$$ ) >/dev/null 2>&1 &\n\
         w=$!\n\
         exec 3<&-\n\
         {run}{stdin_redirect}\n\
         s=$?\n\
         kill -s TERM \"$w\" 2>/dev/null\n\
         exit $s"
    );
    let arg = match payload {
        Payload::Inline(s) | Payload::File(s) => s,
    };
    [wrapper, format!("{ORPHAN_TAG}{token}"), arg.to_string()]
}

/// The command line sent to a remote target. Before the script starts it reports what is
/// needed to stop it later: `sh` and PowerShell print [`PID_MARKER`] and their PID on stderr,
/// `cmd` carries `token` in its command line (see [`kill_command_line`]).
///
/// For `sh` the login shell is replaced (`exec`) by our `sh` wrapper ([`tracked_sh_args`]),
/// so the reported PID is the session leader sshd created with `setsid()`, i.e. the process
/// group of everything the script starts.
pub fn tracked_command_line(shell: Shell, payload: Payload<'_>, token: &str) -> String {
    tracked_command_line_with_input(shell, payload, token, false)
}

/// [`tracked_command_line`]; with `input` (only for `sh`), the wrapper first reads an
/// [`input_block`] from its standard input ([`tracked_sh_args_with_input`]).
pub fn tracked_command_line_with_input(
    shell: Shell,
    payload: Payload<'_>,
    token: &str,
    input: bool,
) -> String {
    match shell {
        Shell::Sh => {
            // The token as `$0` is in the wrapper's command line, where `stop_orphan_command_line`
            // looks for it: a PID alone could have been reused by the time it is needed.
            let [wrapper, tag, arg] = tracked_sh_args_with_input(payload, token, input);
            format!(
                "exec sh -c {} {} {}",
                sh_quote(&wrapper),
                sh_quote(&tag),
                sh_quote(&arg)
            )
        }
        Shell::PowerShell => {
            let announce = "[Console]::Error.WriteLine([string][char]30 + 'runner-pid:' + $PID)";
            let script = match payload {
                Payload::Inline(s) => format!("{announce}\n{s}"),
                Payload::File(p) => format!(
                    "{announce}\n& {}\nif ($LASTEXITCODE) {{ exit $LASTEXITCODE }}",
                    ps_quote(p)
                ),
            };
            format!(
                "{POWERSHELL} -ExecutionPolicy Bypass -EncodedCommand {}",
                powershell_encode(&script)
            )
        }
        Shell::Cmd => {
            let what = match payload {
                Payload::Inline(s) => s.to_string(),
                Payload::File(p) => format!("\"{p}\""),
            };
            format!("cmd.exe /d /c set \"{CMD_TOKEN_VAR}={token}\" & {what}")
        }
    }
}

/// The command line, sent on a second channel, that stops a tracked command: the whole process
/// group for `sh` (TERM, up to two seconds of grace, then KILL), the process tree for Windows.
pub fn kill_command_line(shell: Shell, pid: Option<u32>, token: &str) -> Option<String> {
    match (shell, pid) {
        (Shell::Sh, Some(pid)) => {
            // dash's `kill` needs `-s SIG --` to accept a negative (group) id.
            let script = format!(
                "p={pid}\n\
                 kill -s TERM -- -$p 2>/dev/null || kill -s TERM $p 2>/dev/null\n\
                 i=0\n\
                 while [ $i -lt 20 ] && kill -s 0 -- -$p 2>/dev/null; do\n\
                 sleep 0.1 2>/dev/null || sleep 1; i=$((i+1))\n\
                 done\n\
                 kill -s KILL -- -$p 2>/dev/null\n\
                 kill -s KILL $p 2>/dev/null\n\
                 exit 0\n"
            );
            Some(command_line(Shell::Sh, &script))
        }
        (Shell::PowerShell, Some(pid)) => Some(command_line(
            Shell::PowerShell,
            &format!("& taskkill.exe /T /F /PID {pid} | Out-Null; exit 0"),
        )),
        (Shell::Cmd, _) => {
            // The killer's own command line is base64, so it never matches the token itself.
            let script = format!(
                "$t = {}\n\
                 Get-CimInstance Win32_Process | Where-Object {{ $_.CommandLine -and $_.CommandLine.Contains($t) }} | \
                 ForEach-Object {{ & taskkill.exe /T /F /PID $_.ProcessId | Out-Null }}\n\
                 exit 0",
                ps_quote(&format!("{CMD_TOKEN_VAR}={token}"))
            );
            Some(command_line(Shell::PowerShell, &script))
        }
        (_, None) => None,
    }
}

/// The `sh` command line, run after reconnecting, that stops a command whose connection was
/// lost, if it still runs: the process group of `pid`, TERM, five seconds of grace, KILL, then
/// up to five seconds for it to be gone. Before any signal it checks that the process `pid`
/// still carries `token` in its command line (the wrapper's `$0`); if another process has the
/// PID now, nothing is signalled. Without a PID (the connection died before the command
/// reported it) the command is looked for by its token. Zombies count as gone.
///
/// It prints one word, read by [`parse_orphan_stop`]: `stopped`, `ended`, `reused`, `alive`
/// (still there after KILL) or `unknown` (the group's leader is gone but processes remain in
/// the group: they cannot be told to be the command's).
pub fn stop_orphan_command_line(pid: Option<u32>, token: &str) -> String {
    // PIDs 0 and 1 as process groups mean "my own group" and "everything": never signal them.
    let pid = pid
        .filter(|&p| p > 1)
        .map(|p| p.to_string())
        .unwrap_or_default();
    // The pattern `r[u]nner-TOKEN` matches the wrapper's `runner-TOKEN` but not itself, so
    // neither this script nor its grep is taken for the command.
    let tag = ORPHAN_TAG.replacen('u', "[u]", 1);
    let script = format!(
        r#"t={pattern}
p={pid}
state() {{
  if [ -r /proc/$1/stat ]; then
    read -r l 2>/dev/null </proc/$1/stat || return 0
    set -- ${{l##*") "}}
    echo "$1"
  else
    ps -o stat= -p "$1" 2>/dev/null
  fi
}}
group_of() {{
  if [ -r /proc/$1/stat ]; then
    read -r l 2>/dev/null </proc/$1/stat || return 0
    set -- ${{l##*") "}}
    echo "$3"
  else
    ps -o pgid= -p "$1" 2>/dev/null | tr -d ' '
  fi
}}
carries() {{
  if [ -r /proc/$1/cmdline ]; then
    grep -qa -- "$t" /proc/$1/cmdline 2>/dev/null
  else
    ps -ww -o args= -p "$1" 2>/dev/null | grep -q -- "$t"
  fi
}}
members() {{
  if [ -d /proc/self ]; then
    for f in /proc/[0-9]*/stat; do
      read -r l 2>/dev/null <"$f" || continue
      set -- ${{l##*") "}}
      [ "$3" = "$p" ] && [ "$1" != Z ] && return 0
    done
    return 1
  fi
  kill -s 0 -- -"$p" 2>/dev/null
}}
settle() {{
  i=0
  while [ $i -lt 50 ] && members; do sleep 0.1 2>/dev/null || sleep 1; i=$((i+1)); done
}}
if [ -z "$p" ]; then
  if [ -d /proc/self ]; then
    found=$(grep -la -- "$t" /proc/[0-9]*/cmdline 2>/dev/null | sed 's|^/proc/||; s|/cmdline$||')
  else
    found=$(ps -ww -A -o pid=,args= 2>/dev/null | grep -- "$t" | awk '{{print $1}}')
  fi
  for x in $found; do
    case $(state "$x") in ''|Z*) continue ;; esac
    p=$(group_of "$x")
    break
  done
  case $p in ''|0|1) echo ended; exit 0 ;; esac
fi
case $(state "$p") in
  ''|Z*)
    if members; then echo unknown; else echo ended; fi
    exit 0 ;;
esac
carries "$p" || {{ echo reused; exit 0; }}
kill -s TERM -- -"$p" 2>/dev/null || kill -s TERM "$p" 2>/dev/null
settle
if members; then
  kill -s KILL -- -"$p" 2>/dev/null
  settle
fi
if members; then echo alive; else echo stopped; fi
"#,
        pattern = sh_quote(&format!("{tag}{token}")),
    );
    command_line(Shell::Sh, &script)
}

/// What [`stop_orphan_command_line`] printed: `Ok` for an answer that settles it, `Err` with
/// the reason otherwise.
pub fn parse_orphan_stop(stdout: &str) -> Result<super::OrphanStop, String> {
    use super::OrphanStop;
    match stdout.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
        Some("stopped") => Ok(OrphanStop::Stopped),
        Some("ended") => Ok(OrphanStop::Ended),
        Some("reused") => Ok(OrphanStop::PidReused),
        Some("alive") => Err("its processes were still there after TERM and KILL".into()),
        Some("unknown") => Err("its shell has ended but processes remain in its process group, which cannot be told to be its own".into()),
        Some(other) => Err(format!("unexpected answer from the target: {other}")),
        None => Err("no answer from the target".into()),
    }
}

/// A script (for `shell`) that prints the SHA-256 of `path` on the target, in some form
/// [`parse_sha256`] reads.
pub fn sha256_script(shell: Shell, path: &str) -> String {
    match shell {
        Shell::Sh => format!(
            // openssl first: it uses the CPU's SHA instructions, about five times faster
            // than coreutils' sha256sum, which dominated the upload of a large file.
            "f={}\n\
             if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 < \"$f\"\n\
             elif command -v sha256sum >/dev/null 2>&1; then sha256sum < \"$f\"\n\
             elif command -v shasum >/dev/null 2>&1; then shasum -a 256 < \"$f\"\n\
             else echo 'none of sha256sum, shasum, openssl is installed on the target' >&2; exit 127\n\
             fi\n",
            sh_quote(path)
        ),
        Shell::PowerShell => format!(
            "$ErrorActionPreference = 'Stop'\n(Get-FileHash -LiteralPath {} -Algorithm SHA256).Hash",
            ps_quote(path)
        ),
        Shell::Cmd => format!("certutil -hashfile \"{path}\" SHA256"),
    }
}

/// Bytes between two "written so far" notes to [`follow_sha256_command`].
pub const FOLLOW_STEP: u64 = 4 * 1024 * 1024;

/// A command line that hashes a file on a POSIX target while an upload writes it, so that the
/// check on the target costs no time after the transfer. It reads lines "N" on stdin, each
/// saying that the first N bytes are written, hashes up to there, and at the end of stdin
/// hashes the rest up to the file's end and prints the hex digest. Python's hashlib, because
/// it hashes in the same process that reads the file (a shell loop of `dd` into `openssl`
/// spent as much CPU on copying through the pipe as it saved). Without `python3` it exits 127
/// and the upload hashes the finished file instead.
pub fn follow_sha256_command(path: &str) -> String {
    const PROGRAM: &str = "import hashlib, sys\n\
        f = open(sys.argv[1], 'rb')\n\
        h = hashlib.sha256()\n\
        done = 0\n\
        def upto(n):\n    \
            global done\n    \
            while n is None or done < n:\n        \
                b = f.read(1 << 20 if n is None else min(1 << 20, n - done))\n        \
                if not b:\n            \
                    return\n        \
                h.update(b)\n        \
                done += len(b)\n\
        for line in iter(sys.stdin.buffer.readline, b''):\n    \
            upto(int(line))\n\
        upto(None)\n\
        print(h.hexdigest())\n";
    format!(
        "command -v python3 >/dev/null 2>&1 || exit 127; exec python3 -c {} {}",
        sh_quote(PROGRAM),
        sh_quote(path)
    )
}

/// Finds a SHA-256 in the output of `sha256sum`, `shasum`, `openssl dgst`, `Get-FileHash` or
/// `certutil` (older versions print the hex in space-separated pairs). Lowercase hex.
pub fn parse_sha256(output: &str) -> Option<String> {
    let is_digest = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    for line in output.lines() {
        for token in line.split(|c: char| c.is_whitespace() || c == '=') {
            if is_digest(token) {
                return Some(token.to_ascii_lowercase());
            }
        }
        let joined: String = line.split_whitespace().collect();
        if is_digest(&joined) {
            return Some(joined.to_ascii_lowercase());
        }
    }
    None
}

/// Removes the PID marker line from a stderr stream and remembers the PID. Everything else,
/// including output a login script prints before the marker, passes through unchanged.
#[derive(Debug, Default)]
pub struct PidMarkerFilter {
    /// Bytes held back because they might be the start of the marker line.
    held: Vec<u8>,
    pid: Option<u32>,
}

/// A marker line longer than this is not ours; give the bytes back.
const MAX_MARKER_LINE: usize = 64;

impl PidMarkerFilter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Feed a chunk; returns the bytes to show. Only the first marker is stripped.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.pid.is_some() {
            return chunk.to_vec();
        }
        self.held.extend_from_slice(chunk);
        let mut shown = Vec::new();
        loop {
            let Some(start) = self.held.iter().position(|&b| b == 0x1e) else {
                shown.append(&mut self.held);
                return shown;
            };
            shown.extend(self.held.drain(..start));
            // `held` now starts with 0x1e.
            match self.held.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    let line = &self.held[..end];
                    if let Some(pid) = parse_marker(line) {
                        self.pid = Some(pid);
                        self.held.drain(..=end);
                        shown.append(&mut self.held);
                        return shown;
                    }
                    // Not our marker: pass the RS byte on and keep looking after it.
                    shown.push(0x1e);
                    self.held.drain(..1);
                }
                None => {
                    let could_be_marker = self.held.len() <= MAX_MARKER_LINE
                        && (self.held.starts_with(PID_MARKER.as_bytes())
                            || PID_MARKER.as_bytes().starts_with(&self.held));
                    if could_be_marker {
                        return shown;
                    }
                    shown.push(0x1e);
                    self.held.drain(..1);
                }
            }
        }
    }

    /// The stream ended: whatever is still held back was not a marker.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

fn parse_marker(line: &[u8]) -> Option<u32> {
    let rest = line.strip_prefix(PID_MARKER.as_bytes())?;
    let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
    let text = std::str::from_utf8(rest).ok()?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests;
