//! The WinRS cmd shell as Windows answers it: create, command, receive, signal and delete, and the
//! commands it pretends to run (the test's program, jobs, echo, del, uploads and reads).

use super::*;

pub(super) fn handle(
    req: &Request,
    state: &Arc<(Mutex<State>, Condvar)>,
    addr: SocketAddr,
) -> (u16, String) {
    let (lock, cvar) = &**state;
    let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
    g.style += 1;
    let style_n = g.style;
    let st = &STYLES[(style_n % 3) as usize];
    let rel = req.message_id.as_str();
    let invalid_selectors = |st: &Style| {
        (
            500,
            fault(
                st,
                rel,
                "Sender",
                "InvalidSelectors",
                "The WS-Management service cannot process the request because the request contained invalid selectors for the resource. ",
                2150858843,
            ),
        )
    };
    let action = req.action.rsplit('/').next().unwrap_or_default();
    match action {
        "Create" => {
            if g.quota_exceeded {
                return (500, quota_fault(st, rel));
            }
            g.created += 1;
            // Every other shell id comes with the `uuid:` prefix of WinRM 1.1.
            let old_style = g.created % 2 == 1;
            let id = if old_style {
                format!("uuid:{}", new_id())
            } else {
                new_id()
            };
            g.shells.insert(
                id.clone(),
                ShellState {
                    commands: HashMap::new(),
                    env: req.environment.iter().cloned().collect(),
                },
            );
            let (w, a, rsp, q) = (st.w, st.a, st.rsp, st.q);
            let shell = if old_style {
                String::new()
            } else {
                format!("<{rsp}:Shell><{rsp}:ShellId>{id}</{rsp}:ShellId><{rsp}:Owner>admin</{rsp}:Owner><{rsp}:IdleTimeOut>PT7200.000S</{rsp}:IdleTimeOut><{rsp}:InputStreams>stdin</{rsp}:InputStreams><{rsp}:OutputStreams>stdout stderr</{rsp}:OutputStreams></{rsp}:Shell>")
            };
            let body = format!(
                "<x:ResourceCreated><{a}:Address>http://{addr}/wsman</{a}:Address><{a}:ReferenceParameters><{w}:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</{w}:ResourceURI><{w}:SelectorSet><{w}:Selector Name={q}ShellId{q}>{id}</{w}:Selector></{w}:SelectorSet></{a}:ReferenceParameters></x:ResourceCreated>{shell}"
            );
            (
                200,
                envelope(
                    st,
                    "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
                    rel,
                    &body,
                ),
            )
        }
        "Delete" => {
            let Some(id) = &req.shell_id else {
                return invalid_selectors(st);
            };
            if g.shells.remove(id).is_none() {
                return invalid_selectors(st);
            }
            g.deleted += 1;
            cvar.notify_all();
            (
                200,
                envelope(
                    st,
                    "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse",
                    rel,
                    "",
                ),
            )
        }
        "Command" => {
            let line = req.command.clone().unwrap_or_default();
            let Some(shell_id) = req.shell_id.clone() else {
                return invalid_selectors(st);
            };
            if !g.shells.contains_key(&shell_id) {
                return invalid_selectors(st);
            }
            let env = g
                .shells
                .get(&shell_id)
                .map(|s| s.env.clone())
                .unwrap_or_default();
            let cmd = run(&mut g, &line, &env);
            cvar.notify_all();
            let cmd_id = new_id();
            g.started.push((
                cmd_id.clone(),
                Started {
                    line: line.clone(),
                    env,
                    stdin: None,
                },
            ));
            if let Some(sh) = g.shells.get_mut(&shell_id) {
                sh.commands.insert(cmd_id.clone(), cmd);
            }
            let rsp = st.rsp;
            (
                200,
                envelope(
                    st,
                    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandResponse",
                    rel,
                    &format!("<{rsp}:CommandResponse><{rsp}:CommandId>{cmd_id}</{rsp}:CommandId></{rsp}:CommandResponse>"),
                ),
            )
        }
        "Send" => {
            let (Some(shell_id), Some(cmd_id)) = (&req.shell_id, &req.command_id) else {
                return invalid_selectors(st);
            };
            let Some(cmd) = g
                .shells
                .get_mut(shell_id)
                .and_then(|s| s.commands.get_mut(cmd_id))
            else {
                return invalid_selectors(st);
            };
            if cmd.finished {
                return (
                    500,
                    fault(
                        st,
                        rel,
                        "Receiver",
                        "InternalError",
                        "The pipe is being closed. ",
                        2147942632,
                    ),
                );
            }
            cmd.stdin
                .extend_from_slice(req.send_data.as_deref().unwrap_or_default());
            if req.send_end {
                cmd.stdin_done = true;
                let all = cmd.stdin.clone();
                if let Some((_, s)) = g.started.iter_mut().find(|(id, _)| id == cmd_id) {
                    s.stdin = Some(all);
                }
            }
            let rsp = st.rsp;
            (
                200,
                envelope(
                    st,
                    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SendResponse",
                    rel,
                    &format!("<{rsp}:SendResponse/>"),
                ),
            )
        }
        "Signal" => {
            let (Some(shell_id), Some(cmd_id)) = (req.shell_id.clone(), req.command_id.clone())
            else {
                return invalid_selectors(st);
            };
            let code = req.signal_code.clone().unwrap_or_default();
            g.signals.push((cmd_id.clone(), code));
            let Some(cmd) = g
                .shells
                .get_mut(&shell_id)
                .and_then(|s| s.commands.get_mut(&cmd_id))
            else {
                return invalid_selectors(st);
            };
            cmd.terminated = true;
            cvar.notify_all();
            let rsp = st.rsp;
            (
                200,
                envelope(
                    st,
                    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SignalResponse",
                    rel,
                    &format!("<{rsp}:SignalResponse/>"),
                ),
            )
        }
        "Receive" => {
            let (Some(shell_id), Some(cmd_id)) = (req.shell_id.clone(), req.command_id.clone())
            else {
                return invalid_selectors(st);
            };
            let timed_out = |st: &Style| {
                (
                    500,
                    fault(
                        st,
                        rel,
                        "Receiver",
                        "TimedOut",
                        "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.  ",
                        2150858793,
                    ),
                )
            };
            loop {
                let Some(cmd) = g
                    .shells
                    .get_mut(&shell_id)
                    .and_then(|s| s.commands.get_mut(&cmd_id))
                else {
                    return invalid_selectors(st);
                };
                if let Some(path) = cmd.upload.clone() {
                    if !cmd.stdin_done {
                        return timed_out(st);
                    }
                    let text = String::from_utf8_lossy(&cmd.stdin).into_owned();
                    let mut bytes = Vec::new();
                    for l in text.lines() {
                        let l = l.trim();
                        if !l.is_empty() {
                            match base64::engine::general_purpose::STANDARD.decode(l) {
                                Ok(b) => bytes.extend(b),
                                Err(_) => return (500, String::new()),
                            }
                        }
                    }
                    cmd.upload = None;
                    let corrupt = g.corrupt_uploads;
                    if corrupt && !bytes.is_empty() {
                        bytes[0] ^= 0xff;
                    }
                    let sha: String = Sha256::digest(&bytes)
                        .iter()
                        .map(|b| format!("{b:02X}"))
                        .collect();
                    let report = format!("runner-upload {} {sha}", bytes.len());
                    // `path` is "DEST" or "DEST\nEXPECTED": the script moves its new file
                    // into place only when it holds what was expected.
                    let (dest, expected) = match path.split_once('\n') {
                        Some((d, e)) => (d.to_string(), Some(e.to_string())),
                        None => (path, None),
                    };
                    let matches = expected
                        .as_deref()
                        .is_none_or(|e| e.eq_ignore_ascii_case(&report["runner-upload ".len()..]));
                    if matches {
                        g.files.insert(dest, bytes);
                    }
                    let Some(cmd) = g
                        .shells
                        .get_mut(&shell_id)
                        .and_then(|s| s.commands.get_mut(&cmd_id))
                    else {
                        return invalid_selectors(st);
                    };
                    cmd.program.push_back(Reply::finish(&report, "", 0));
                    continue;
                }
                if cmd.terminated
                    && cmd
                        .program
                        .front()
                        .is_some_and(|r| matches!(r, Reply::Hang))
                {
                    cmd.program.clear();
                    cmd.program.push_back(Reply::done(1));
                }
                match cmd.program.front().cloned() {
                    None => {
                        cmd.finished = true;
                        return timed_out(st);
                    }
                    Some(Reply::TimedOut) => {
                        cmd.program.pop_front();
                        return timed_out(st);
                    }
                    Some(Reply::Hang) => {
                        let (ng, _) = cvar
                            .wait_timeout(g, Duration::from_secs(1))
                            .unwrap_or_else(|e| e.into_inner());
                        g = ng;
                        let still = g
                            .shells
                            .get(&shell_id)
                            .and_then(|s| s.commands.get(&cmd_id))
                            .is_some_and(|c| !c.terminated);
                        if still {
                            return timed_out(st);
                        }
                        continue;
                    }
                    Some(Reply::LoseShell) => {
                        g.shells.remove(&shell_id);
                        return invalid_selectors(st);
                    }
                    Some(Reply::Output { chunks, done }) => {
                        cmd.program.pop_front();
                        if done.is_some() {
                            cmd.finished = true;
                        }
                        let mut body = String::new();
                        for (i, (which, data)) in chunks.iter().enumerate() {
                            let name = if *which == Out::Stdout {
                                "stdout"
                            } else {
                                "stderr"
                            };
                            body.push_str(&stream_xml(st, name, &cmd_id, data, false, i as u64));
                            body.push_str(st.nl);
                        }
                        let rsp = st.rsp;
                        let q = st.q;
                        let state = match done {
                            Some(code) => {
                                body.push_str(&stream_xml(st, "stdout", &cmd_id, b"", true, style_n));
                                body.push_str(&stream_xml(st, "stderr", &cmd_id, b"", true, style_n + 1));
                                format!("<{rsp}:CommandState CommandId={q}{cmd_id}{q} State={q}http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done{q}><{rsp}:ExitCode>{code}</{rsp}:ExitCode></{rsp}:CommandState>")
                            }
                            None => format!("<{rsp}:CommandState CommandId={q}{cmd_id}{q} State={q}http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running{q}/>"),
                        };
                        let body = format!(
                            "<{rsp}:ReceiveResponse SequenceID={q}0{q}>{body}{state}</{rsp}:ReceiveResponse>"
                        );
                        return (
                            200,
                            envelope(
                                st,
                                "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/ReceiveResponse",
                                rel,
                                &body,
                            ),
                        );
                    }
                }
            }
        }
        _ => (
            500,
            fault(
                st,
                rel,
                "Sender",
                "ActionNotSupported",
                "The action is not supported by the service. ",
                2150858753,
            ),
        ),
    }
}

/// The text between `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// runner's detached-job scripts (launch, status, tail, kill, remove), emulated on the jobs
/// table: this checks the conversation, not Windows itself.
fn job_script(g: &mut State, script: &str) -> Option<Reply> {
    let dir = between(script, "ExpandEnvironmentVariables('", "')")?.replace("''", "'");
    if !dir.contains("runner-jobs") {
        return None;
    }
    if script.contains("Win32_Process") {
        let b64 = between(script, "FromBase64String('", "')")?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let command = String::from_utf8(bytes).ok()?;
        let Some(program) = g.job_programs.get(&command).cloned() else {
            return Some(Reply::finish(
                "",
                &format!("no job scripted for {command:?}\r\n"),
                1,
            ));
        };
        g.jobs.insert(
            dir,
            Job {
                program,
                shown: 0,
                killed: false,
            },
        );
        return Some(Reply::finish("4242", "", 0));
    }
    if script.contains("'DONE ' +") {
        let Some(job) = g.jobs.get_mut(&dir) else {
            return Some(Reply::finish("GONE\r\n", "", 0));
        };
        if job.shown < job.program.chunks.len() {
            job.shown += 1;
        }
        let all_shown = job.shown == job.program.chunks.len();
        let text = match (job.killed, all_shown, job.program.code) {
            (true, _, _) => "LOST".to_string(),
            // cmd prints ERRORLEVEL as a signed 32-bit number.
            (false, true, Some(code)) => format!("DONE {}", code as i32),
            _ => "RUNNING".to_string(),
        };
        return Some(Reply::finish(&format!("{text}\r\n"), "", 0));
    }
    if script.contains("OpenStandardOutput") {
        let which = if script.contains("'out'") {
            Out::Stdout
        } else {
            Out::Stderr
        };
        let offset: usize = between(script, "Seek(", ",")?.trim().parse().ok()?;
        let bytes = g.jobs.get(&dir).map(|j| j.file(which)).unwrap_or_default();
        let rest = bytes.get(offset..).unwrap_or_default();
        return Some(Reply::Output {
            chunks: if rest.is_empty() {
                vec![]
            } else {
                vec![(Out::Stdout, rest.to_vec())]
            },
            done: Some(0),
        });
    }
    if script.contains("taskkill.exe /T /F") {
        if let Some(job) = g.jobs.get_mut(&dir) {
            job.killed = true;
            g.killed_jobs.push(dir.clone());
        }
        return Some(Reply::finish("GONE\r\n", "", 0));
    }
    if script.contains("Remove-Item -LiteralPath") {
        g.jobs.remove(&dir);
        return Some(Reply::done(0));
    }
    None
}

/// The answer of the read script: `runner-read LENGTH SHA256`, the file as base64 lines of
/// 48 KiB, `runner-end`; exit 3 for a missing file.
fn read_reply(g: &State, script: &str) -> Reply {
    let path = script
        .lines()
        .find_map(|l| l.strip_prefix("$p = "))
        .and_then(unquote_ps)
        .unwrap_or_default();
    let Some(bytes) = g.files.get(&path) else {
        return Reply::finish("", &format!("no such file: {path}\r\n"), 3);
    };
    let sha: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let mut out = format!("runner-read {} {sha}\r\n", bytes.len());
    for block in bytes.chunks(48 * 1024) {
        out.push_str(&base64::engine::general_purpose::STANDARD.encode(block));
        out.push_str("\r\n");
    }
    out.push_str("runner-end\r\n");
    Reply::finish(&out, "", 0)
}

fn decode_ps(b64: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]))
        .collect();
    String::from_utf16(&units).ok()
}

fn unquote_ps(s: &str) -> Option<String> {
    let inner = s.strip_prefix('\'')?;
    let end = inner.rfind('\'')?;
    Some(inner[..end].replace("''", "'"))
}

fn parent_of(path: &str) -> &str {
    match path.rfind('\\') {
        Some(0) | None => "",
        Some(i) if i == 2 && path.as_bytes().get(1) == Some(&b':') => &path[..3],
        Some(i) => &path[..i],
    }
}

/// "Runs" a command line: decides what its Receives will answer.
fn run(g: &mut State, line: &str, env: &BTreeMap<String, String>) -> Cmd {
    let mut cmd = Cmd {
        program: VecDeque::new(),
        stdin: Vec::new(),
        stdin_done: false,
        terminated: false,
        finished: false,
        upload: None,
    };
    let script: Option<(String, bool)> = if let Some(rest) =
        line.strip_prefix("powershell.exe -NoProfile -NonInteractive -EncodedCommand ")
    {
        match decode_ps(rest.trim()) {
            Some(script) => {
                if let Some(reply) = job_script(g, &script) {
                    cmd.program.push_back(reply);
                    return cmd;
                }
                if script.contains("'runner-read '") {
                    cmd.program.push_back(read_reply(g, &script));
                    return cmd;
                }
                if script.contains("'runner-upload '") {
                    let field = |name: &str| {
                        script
                            .lines()
                            .find_map(|l| l.strip_prefix(name))
                            .and_then(unquote_ps)
                            .unwrap_or_default()
                    };
                    let path = field("$p = ");
                    let expected = field("$e = ");
                    let parent = parent_of(&path).to_string();
                    if !g.dirs.contains(&parent) {
                        cmd.program.push_back(Reply::finish(
                            "",
                            &format!("directory missing: {parent}\r\n"),
                            3,
                        ));
                    } else if expected.is_empty() {
                        cmd.upload = Some(path);
                    } else {
                        cmd.upload = Some(format!("{path}\n{expected}"));
                    }
                    return cmd;
                }
                Some((script, false))
            }
            None => None,
        }
    } else if let Some(rest) = line
        .strip_prefix("powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File ")
    {
        let path = rest.trim().trim_matches('"');
        g.files
            .get(path)
            .map(|b| (String::from_utf8_lossy(b).into_owned(), true))
    } else if line.starts_with('"') && line.ends_with(".cmd\"") {
        let path = line.trim_matches('"');
        g.files.get(path).map(|b| {
            let text = String::from_utf8_lossy(b).replace("\r\n", "\n");
            let text = text.strip_prefix("@echo off\n").unwrap_or(&text);
            (text.trim_end_matches('\n').to_string(), true)
        })
    } else if line == "echo %TEMP%" {
        cmd.program
            .push_back(Reply::finish(&format!("{TEMP_DIR}\r\n"), "", 0));
        return cmd;
    } else if let Some(rest) = line.strip_prefix("del /f /q ") {
        let path = rest.trim().trim_matches('"');
        let existed = g.files.remove(path).is_some();
        cmd.program.push_back(if existed {
            Reply::done(0)
        } else {
            Reply::finish("", "Could Not Find the file\r\n", 1)
        });
        return cmd;
    } else {
        Some((line.to_string(), false))
    };
    let Some((script, via_file)) = script else {
        cmd.program.push_back(Reply::finish(
            "",
            "The system cannot find the file specified.\r\n",
            1,
        ));
        return cmd;
    };
    if let Some(reply) = job_script(g, &script) {
        cmd.program.push_back(reply);
        return cmd;
    }
    g.delivered.push((script.clone(), via_file));
    if let Some(p) = g.programs.get(&script) {
        cmd.program = p.iter().cloned().collect();
    } else if let Some(code) = script
        .strip_prefix("exit /b ")
        .or_else(|| script.strip_prefix("exit "))
        .and_then(|c| c.trim().parse::<u32>().ok())
    {
        cmd.program.push_back(Reply::done(code));
    } else if script == "whoami" {
        cmd.program
            .push_back(Reply::finish("acme\\administrator\r\n", "", 0));
    } else if let Some(text) = script.strip_prefix("echo ") {
        // As cmd.exe does: `%NAME%` is the variable's value when it is set.
        let mut shown = text.to_string();
        for (name, value) in env {
            shown = shown.replace(&format!("%{name}%"), value);
        }
        cmd.program
            .push_back(Reply::finish(&format!("{shown}\r\n"), "", 0));
    } else {
        let first = script.split_whitespace().next().unwrap_or_default();
        cmd.program.push_back(Reply::finish(
            "",
            &format!("'{first}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"),
            1,
        ));
    }
    cmd
}
