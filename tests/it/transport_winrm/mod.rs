//! The WinRM transport against recorded Windows messages and against the loopback test
//! server in `common/winrm_server/` (which behaves like Windows but is not Windows).

use crate::common::winrm_server;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::winrm_server::{Options, Out, Reply, WinrmServer};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use runner::transport::winrm::{
    parse_cert_sha256, response, soap, Credentials, TlsTrust, WinrmConfig, WinrmError,
    WinrmTransport,
};
use runner::transport::{CommandExit, Control, Secret, Shell, Stream, Transport, TransportError};

mod exec;
mod failures;
mod https;
mod ntlm;
mod powershell;
mod recorded;
mod stopping;
mod upload;

const USER: &str = "admin";

const PASSWORD: &str = "S3cret!pw";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/winrm")
}

fn start(ip: &str) -> WinrmServer {
    WinrmServer::start(
        ip,
        Options {
            user: USER.into(),
            password: PASSWORD.into(),
            ..Options::default()
        },
    )
}

fn transport_with(srv: &WinrmServer, password: &str, tls: Option<TlsTrust>) -> WinrmTransport {
    WinrmTransport::new(WinrmConfig {
        name: "win".into(),
        host: srv.host(),
        port: srv.port(),
        tls,
        credentials: Credentials::Basic {
            user: USER.into(),
            password: Secret::new(password),
        },
        connect_timeout: Duration::from_secs(10),
        operation_timeout: Duration::from_secs(20),
    })
}

fn transport(srv: &WinrmServer) -> WinrmTransport {
    transport_with(srv, PASSWORD, None)
}

#[derive(Debug)]
struct Output {
    exit: CommandExit,
    stdout: String,
    stderr: String,
    chunks: Vec<(Stream, Vec<u8>)>,
}

fn run(
    t: &mut dyn Transport,
    script: &str,
    shell: Shell,
    ctl: &Control,
) -> Result<Output, TransportError> {
    let mut chunks = Vec::new();
    let exit = t.exec(script, shell, ctl, &mut |s, b| chunks.push((s, b.to_vec())))?;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    for (s, b) in &chunks {
        match s {
            Stream::Stdout => stdout.extend_from_slice(b),
            Stream::Stderr => stderr.extend_from_slice(b),
        }
    }
    Ok(Output {
        exit,
        stdout: String::from_utf8(stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(stderr).expect("utf-8 stderr"),
        chunks,
    })
}

fn cmd(t: &mut dyn Transport, script: &str) -> Result<Output, TransportError> {
    run(t, script, Shell::Cmd, &Control::new(None))
}

fn error_text(e: &TransportError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(" | ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn digest(path: &std::path::Path) -> runner::transport::FileDigest {
    runner::transport::FileDigest::of_file(path).expect("digest of the source")
}
