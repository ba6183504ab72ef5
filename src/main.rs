//! The `runner` binary: parses the command line, runs the command, maps the outcome to an
//! exit code. Library errors are typed; this edge is the only place they become text.

mod cli;

fn main() {
    let code = cli::main();
    std::process::exit(code);
}
