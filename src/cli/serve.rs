//! `runner serve`: wiring of the status server.

use anyhow::Context;

use runner::clock::Clock;
use runner::exit::Exit;
use runner::playbook;

use super::describe::InvalidArg;
use super::state::{runs_dir, state_path};
use super::{ServeArgs, StateArg};

pub(super) fn serve(args: ServeArgs, clock: Clock) -> anyhow::Result<Exit> {
    use runner::serve;
    let on_server = args
        .state
        .as_deref()
        .and_then(|s| s.to_str())
        .is_some_and(runner::journal::pg::is_url);
    if args.state.is_some() && !on_server && args.files.len() > 1 {
        return Err(InvalidArg(
            "--state (or RUNNER_STATE) names one journal file: give one playbook with it, or none and let each playbook use its default journal (a postgres:// server holds many cutovers and may serve several)".into(),
        )
        .into());
    }
    let listen =
        serve::parse_listen(&args.listen).map_err(|e| InvalidArg(format!("--listen {e}")))?;
    let mut cutovers = Vec::with_capacity(args.files.len());
    for file in &args.files {
        let pb = playbook::load(file)?;
        let state = state_path(
            &pb,
            &StateArg {
                state: args.state.clone(),
            },
        )?;
        cutovers.push(serve::Cutover {
            runs_dir: runs_dir(&pb, &state),
            state,
            playbook: pb,
        });
    }
    let token = match &args.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                InvalidArg(format!(
                    "--token-file {}: cannot read it: {e}",
                    path.display()
                ))
            })?;
            let token = text.trim().to_owned();
            if token.is_empty()
                || token
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == ';')
            {
                return Err(InvalidArg(format!(
                    "--token-file {}: the token must be one non-empty word (no spaces, no `;`)",
                    path.display()
                ))
                .into());
            }
            Some(token)
        }
        None if listen.ip().is_loopback() => None,
        None => {
            let token = serve::generate_token().context("generating an access token")?;
            println!("access token (shown once): {token}");
            println!(
                "open http://{listen}/?token={token} once; the browser then keeps it in a cookie"
            );
            Some(token)
        }
    };
    serve::serve(serve::ServeOptions {
        cutovers,
        listen,
        token,
        clock,
    })?;
    Ok(Exit::Success)
}
