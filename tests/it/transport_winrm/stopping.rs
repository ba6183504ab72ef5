//! A timeout, a cancel, or a command left behind is stopped by terminating and deleting its shell.

use super::*;

#[test]
fn timeout_terminates_and_deletes_the_shell() {
    let srv = start("127.0.0.31");
    srv.program("hang", vec![Reply::stdout("started\r\n"), Reply::Hang]);
    let mut t = transport(&srv);
    let out = run(
        &mut t,
        "hang",
        Shell::Cmd,
        &Control::new(Some(Duration::from_millis(300))),
    )
    .unwrap();
    assert_eq!(out.exit, CommandExit::TimedOut);
    assert_eq!(out.stdout, "started\r\n");
    assert!(srv
        .signals()
        .iter()
        .any(|(_, code)| code.ends_with("/terminate")));
    assert_eq!(srv.open_shells(), 0);
    // The transport still works afterwards.
    assert_eq!(cmd(&mut t, "echo again").unwrap().stdout, "again\r\n");
}

#[test]
fn cancel_terminates_and_deletes_the_shell() {
    let srv = start("127.0.0.32");
    srv.program("hang", vec![Reply::stdout("started\r\n"), Reply::Hang]);
    let mut t = transport(&srv);
    let ctl = Control::new(None);
    let cancel = ctl.cancel.clone();
    // Cancel as soon as the command shows life: no sleeps, no races.
    let exit = t
        .exec("hang", Shell::Cmd, &ctl, &mut |_, _| {
            cancel.store(true, Ordering::SeqCst)
        })
        .unwrap();
    assert_eq!(exit, CommandExit::Cancelled);
    assert!(!srv.signals().is_empty());
    assert_eq!(srv.open_shells(), 0);
}

/// The shell a command runs in, from the Command request the server logged.
fn shell_of_command(srv: &WinrmServer) -> Option<String> {
    let req = srv.requests().into_iter().find(|r| r.action == "Command")?;
    let start = req.body.find("Name=\"ShellId\">")? + "Name=\"ShellId\">".len();
    let len = req.body[start..].find('<')?;
    Some(req.body[start..start + len].to_string())
}

#[test]
fn a_command_left_behind_is_stopped_by_deleting_its_shell() {
    use runner::transport::{Orphan, OrphanStop};
    let srv = start("127.0.0.67");
    srv.program("hang", vec![Reply::stdout("started\r\n"), Reply::Hang]);
    let mut first = transport(&srv);
    let mut second = transport(&srv);
    let ctl = Control::new(None);
    let cancel = ctl.cancel.clone();
    let mut found = None;
    // While the command runs, another connection stops it as the runner does after it lost
    // the first one.
    let _ = first.exec("hang", Shell::Cmd, &ctl, &mut |_, _| {
        if found.is_none() {
            let shell_id = shell_of_command(&srv).expect("the command's shell");
            let orphan = Orphan::WinrmShell { shell_id };
            found = Some((
                second.stop_orphan(&orphan).map_err(|e| error_text(&e)),
                srv.open_shells(),
                orphan,
            ));
        }
        cancel.store(true, Ordering::SeqCst);
    });
    let (stopped, open_after, orphan) = found.expect("the command started");
    assert_eq!(stopped, Ok(OrphanStop::ShellDeleted));
    assert_eq!(open_after, 0);
    // Asked again, the shell is gone: the command has ended.
    assert_eq!(
        second.stop_orphan(&orphan).map_err(|e| error_text(&e)),
        Ok(OrphanStop::Ended)
    );
}
