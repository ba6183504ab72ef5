//! The integration tests: one binary, one module per area. Shared helpers live in `common`
//! (servers the tests start, process helpers) and `common_cli` (running the `runner` binary).

mod apply_crash;
mod apply_pg;
mod apply_ssh;
mod apply_winrm;
mod background;
mod cli_ping;
mod cli_plan;
mod cli_validate;
mod common;
mod common_cli;
mod customers;
mod estimates;
mod fan_out;
mod journal;
mod journal_stores;
mod libssh2_hostile_server;
mod long_steps;
mod network_faults;
mod notify;
mod operator_view;
mod overrun;
mod report_views;
mod run_builder;
mod serve;
mod ssh_ciphers;
mod ssh_jump;
mod state_setting;
mod step_secrets;
mod terminal;
mod torture;
mod transport_local;
mod transport_ssh;
mod transport_winrm;
mod window_gate;
mod window_props;
