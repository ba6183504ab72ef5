//! Every cipher and MAC the SSH transport offers, one at a time, against a real OpenSSH server
//! that allows only that one. libssh2 is carried with a patch to how it encrypts outgoing
//! packets (vendor/README.md); sshd drops a connection on the first packet whose MAC does not
//! match, so a command and a multi-packet upload succeeding under each mode is the proof that
//! the bytes on the wire are right.

use std::fs;

use crate::common::{pseudo_random_bytes, run_sh, ssh_config, Sshd};
use runner::transport::{CommandExit, FileDigest, Shell, SshTransport, Transport};

/// Runs a command and an upload of a few hundred packets with sshd limited to `only`.
fn command_and_upload_work(ip: &str, only: &str) {
    let sshd = Sshd::start_with(ip, only);
    let mut t = SshTransport::new(ssh_config(&sshd));
    t.connect()
        .unwrap_or_else(|e| panic!("connect with `{only}`: {e}"));

    let out = run_sh(&mut t, "printf '%s' \"$((6 * 7))\"; exit 5", None)
        .unwrap_or_else(|e| panic!("exec with `{only}`: {e}"));
    assert_eq!(out.exit, CommandExit::Code(5), "with `{only}`");
    assert_eq!(out.stdout, "42", "with `{only}`");

    // Not a multiple of the block size, so the last packet is a short one. Printable, so
    // that it can come back as a command's output below.
    let data: Vec<u8> = pseudo_random_bytes(3 * 1024 * 1024 + 7, ip.len() as u64)
        .into_iter()
        .map(|b| b'a' + b % 26)
        .collect();
    let src = sshd.dir().join("payload.bin");
    fs::write(&src, &data).expect("write payload");
    let dest = sshd.dir().join("payload.copy");
    let expected = FileDigest::of_file(&src).expect("digest");
    t.upload(
        &src,
        &expected,
        &dest.display().to_string(),
        Shell::Sh,
        &mut |_| Ok(()),
    )
    .unwrap_or_else(|e| panic!("upload with `{only}`: {e}"));
    assert_eq!(
        fs::read(&dest).expect("read the copy"),
        data,
        "with `{only}`"
    );

    // Output larger than one packet comes back intact too (the receiving side).
    let out = run_sh(&mut t, &format!("cat '{}'", dest.display()), None)
        .unwrap_or_else(|e| panic!("read back with `{only}`: {e}"));
    assert!(out.stdout.as_bytes() == data, "with `{only}`");
}

#[test]
fn each_cipher_works_against_openssh() {
    for (n, cipher) in [
        "aes128-ctr",
        "aes256-ctr",
        "aes192-ctr",
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "chacha20-poly1305@openssh.com",
    ]
    .iter()
    .enumerate()
    {
        command_and_upload_work(&format!("127.0.5.{}", n + 1), &format!("Ciphers {cipher}"));
    }
}

#[test]
fn each_mac_works_against_openssh_with_aes_ctr() {
    for (n, mac) in [
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512-etm@openssh.com",
        "hmac-sha2-256",
        "hmac-sha2-512",
    ]
    .iter()
    .enumerate()
    {
        command_and_upload_work(
            &format!("127.0.5.{}", n + 11),
            &format!("Ciphers aes128-ctr\nMACs {mac}"),
        );
    }
}
