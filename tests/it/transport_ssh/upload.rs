//! Uploads arrive intact (larger than their buffer too) and verified by size and SHA-256 on the
//! target; another hash on the target, or a source changed since the plan, fails the upload and
//! keeps the old file.

use super::*;

#[test]
fn upload_verifies_size_and_sha256_on_the_target() {
    let sshd = Sshd::start("127.0.0.11");
    let mut t = transport(&sshd);
    let data = pseudo_random_bytes(5 * 1024 * 1024 + 123, 42);
    let src = sshd.dir().join("payload.bin");
    fs::write(&src, &data).expect("write payload");
    let dest = sshd.dir().join("dest").join("payload.copy");
    fs::create_dir(dest.parent().expect("parent")).expect("mkdir");

    let mut reports = Vec::new();
    t.upload(
        &src,
        &digest(&src),
        &dest.display().to_string(),
        Shell::Sh,
        &mut |n| {
            reports.push(n);
            Ok(())
        },
    )
    .expect("upload");
    assert_eq!(digest(&dest).sha256, runner_hex(&Sha256::digest(&data)));
    assert_eq!(fs::read(&dest).expect("read dest"), data);
    assert_eq!(reports.last().copied(), Some(data.len() as u64));
    assert!(
        reports.windows(2).all(|w| w[0] <= w[1]),
        "progress must not go back"
    );

    // Uploading again overwrites.
    let small = b"small".to_vec();
    fs::write(&src, &small).expect("write");
    t.upload(
        &src,
        &digest(&src),
        &dest.display().to_string(),
        Shell::Sh,
        &mut |_| Ok(()),
    )
    .expect("upload again");
    assert_eq!(fs::read(&dest).expect("read"), small);

    // A destination in a directory that does not exist is an error naming that directory.
    let missing_dir = sshd.dir().join("no-such-dir");
    let bad = missing_dir.join("x.bin");
    let err = t
        .upload(
            &src,
            &digest(&src),
            &bad.display().to_string(),
            Shell::Sh,
            &mut |_| Ok(()),
        )
        .expect_err("missing parent");
    match &err {
        TransportError::UploadParentMissing { parent, .. } => {
            assert_eq!(parent, &missing_dir.display().to_string())
        }
        other => panic!("expected UploadParentMissing, got {other:?}"),
    }
    assert!(err.to_string().contains(&missing_dir.display().to_string()));
    assert!(!missing_dir.exists(), "the directory must not be created");

    // The session survives the failed upload.
    assert_eq!(
        run_sh(&mut t, "echo after", None).expect("exec").stdout,
        "after\n"
    );
}

/// Larger than the upload's buffer, and not a whole number of its blocks, so the unsent rest
/// moves to the buffer's front several times and the last read is a short one.
#[test]
fn upload_larger_than_its_buffer_arrives_intact() {
    let sshd = Sshd::start("127.0.5.31");
    let mut t = transport(&sshd);
    let data = pseudo_random_bytes(41 * 1024 * 1024 + 4321, 7);
    let src = sshd.dir().join("large.bin");
    fs::write(&src, &data).expect("write payload");
    let dest = sshd.dir().join("large.copy");
    let upload = |t: &mut SshTransport, progress: runner::transport::Pace<'_>| {
        let _ = fs::remove_file(&dest);
        t.upload(
            &src,
            &digest(&src),
            &dest.display().to_string(),
            Shell::Sh,
            progress,
        )
        .expect("upload");
        assert!(
            fs::read(&dest).expect("read dest") == data,
            "the copy differs"
        );
    };
    let mut last = 0;
    upload(&mut t, &mut |n| {
        last = n;
        Ok(())
    });
    assert_eq!(last, data.len() as u64);

    // Again with the smallest buffer, which a wide fan-out of uploads gets: hold shares until
    // the budget is spent. (Other tests here may give one back meanwhile; then this upload
    // takes a larger size, which is tested above.)
    let mut held = Vec::new();
    while held
        .last()
        .is_none_or(|b: &UploadBuffer| b.window > 256 * 1024)
    {
        held.push(UploadBuffer::reserve());
    }
    upload(&mut t, &mut |_| Ok(()));
    drop(held);
}

fn runner_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn upload_fails_when_the_target_reports_another_hash() {
    // The target's sha256sum lies: verification must catch it rather than trust the transfer.
    let sshd = Sshd::start_with("127.0.0.17", "SetEnv PATH={dir}/bin:/usr/bin:/bin");
    let bin = sshd.dir().join("bin");
    fs::create_dir(&bin).expect("mkdir");
    // Every tool the verification may use lies the same way.
    let fake = lying_tool(&bin, "sha256sum", &format!("{}  -", "0".repeat(64)));
    lying_tool(
        &bin,
        "openssl",
        &format!("SHA2-256(stdin)= {}", "0".repeat(64)),
    );
    let mut t = transport(&sshd);
    assert_eq!(
        run_sh(&mut t, "command -v sha256sum", None)
            .expect("exec")
            .stdout
            .trim(),
        fake.display().to_string(),
        "the session's PATH must pick the fake"
    );

    let src = sshd.dir().join("small.bin");
    fs::write(&src, b"payload").expect("write");
    let dest = sshd.dir().join("small.copy");
    // What the destination held before must survive an upload that did not verify.
    fs::write(&dest, b"the old, longer content").expect("write the old file");
    let err = t
        .upload(
            &src,
            &digest(&src),
            &dest.display().to_string(),
            Shell::Sh,
            &mut |_| Ok(()),
        )
        .expect_err("the hash does not match");
    match &err {
        TransportError::UploadVerify {
            expected_bytes,
            actual_bytes,
            actual_sha256,
            ..
        } => {
            assert_eq!(*expected_bytes, 7);
            assert_eq!(*actual_bytes, 7);
            assert_eq!(actual_sha256, &"0".repeat(64));
        }
        other => panic!("expected UploadVerify, got {other:?}"),
    }
    assert!(err.to_string().contains("local file is unchanged"), "{err}");
    match &err {
        TransportError::UploadVerify { .. } => {}
        other => panic!("{other:?}"),
    }
    assert_old_file_kept(&dest, b"the old, longer content");
}

/// `dest` still holds `old`, and no temporary file of the upload is left beside it.
fn assert_old_file_kept(dest: &Path, old: &[u8]) {
    assert_eq!(
        fs::read(dest).expect("read the destination"),
        old,
        "the destination was overwritten by an upload that failed"
    );
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let dir = dest.parent().expect("a parent");
    let left: Vec<_> = fs::read_dir(dir)
        .expect("read the folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!(".{name}.runner-")))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn upload_stops_when_the_source_changed_since_the_plan() {
    // The plan hashed 1 MiB; by the time the step runs the file is 6 MiB. The target must not
    // end up with an unreviewed file reported as fine, and the error must say to review again.
    let sshd = Sshd::start("127.0.0.18");
    let mut t = transport(&sshd);
    let src = sshd.dir().join("grows.bin");
    fs::write(&src, pseudo_random_bytes(1024 * 1024, 5)).expect("write");
    let planned = digest(&src);
    fs::write(&src, pseudo_random_bytes(6 * 1024 * 1024, 6)).expect("rewrite");
    let dest_path = sshd.dir().join("grows.copy");
    fs::write(&dest_path, b"reviewed earlier").expect("write the old file");
    let dest = dest_path.display().to_string();
    let changed = |t: &mut SshTransport, planned: &FileDigest| {
        t.upload(&src, planned, &dest, Shell::Sh, &mut |_| Ok(()))
            .expect_err("the source changed")
    };
    let err = changed(&mut t, &planned);
    match &err {
        TransportError::UploadSourceChanged(c) => {
            assert_eq!(c.expected_bytes, 1024 * 1024);
            assert!(
                c.now.starts_with(&format!("{} bytes", 6 * 1024 * 1024)),
                "{}",
                c.now
            );
        }
        other => panic!("expected UploadSourceChanged, got {other:?}"),
    }
    assert!(err.to_string().contains("runner plan"), "{err}");
    assert_old_file_kept(&dest_path, b"reviewed earlier");

    // Same size, other content, large enough to be hashed while written: that hash differs,
    // the finished file's too, and the local file is read again to tell the cause.
    let len = 9 * 1024 * 1024;
    fs::write(&src, pseudo_random_bytes(len, 1)).expect("write");
    let planned = digest(&src);
    fs::write(&src, pseudo_random_bytes(len, 2)).expect("rewrite");
    let err = changed(&mut t, &planned);
    assert!(
        matches!(err, TransportError::UploadSourceChanged(_)),
        "{err:?}"
    );
    assert_old_file_kept(&dest_path, b"reviewed earlier");

    // The session is still usable afterwards.
    assert_eq!(
        run_sh(&mut t, "echo after", None).expect("exec").stdout,
        "after\n"
    );
}

/// A large upload is hashed on the target while it is written (by Python, following the
/// file). That hash is taken when it matches; anything else goes to the usual hash of the
/// finished file, so a wrong follower can neither fail a good upload nor pass a bad one.
#[test]
fn upload_takes_the_hash_made_while_writing_only_when_it_matches() {
    let sshd = Sshd::start_with("127.0.5.32", "SetEnv PATH={dir}/bin:/usr/bin:/bin");
    let bin = sshd.dir().join("bin");
    fs::create_dir(&bin).expect("mkdir");
    let liar = |name: &str| lying_tool(&bin, name, &format!("{}  -", "0".repeat(64)));
    let mut t = transport(&sshd);
    let data = pseudo_random_bytes(9 * 1024 * 1024 + 11, 8);
    let src = sshd.dir().join("big.bin");
    fs::write(&src, &data).expect("write");
    let dest = sshd.dir().join("big.copy");
    let upload = |t: &mut SshTransport| {
        let _ = fs::remove_file(&dest);
        let result = t.upload(
            &src,
            &digest(&src),
            &dest.display().to_string(),
            Shell::Sh,
            &mut |_| Ok(()),
        );
        assert!(
            fs::read(&dest).expect("read dest") == data,
            "the copy differs"
        );
        result
    };

    // The follower lies: the hash of the finished file decides, and it matches.
    liar("python3");
    upload(&mut t).expect("a wrong follower must not fail a good upload");

    // Now the tools for the finished file lie and the follower is the real python3: the
    // upload passes only because the follower's hash was taken.
    fs::remove_file(bin.join("python3")).expect("remove the fake python3");
    for tool in ["openssl", "sha256sum", "shasum"] {
        liar(tool);
    }
    upload(&mut t).expect("the follower's matching hash");
}

/// An executable `name` in `bin` that reads its input and prints `output`, whatever it got.
fn lying_tool(bin: &Path, name: &str, output: &str) -> std::path::PathBuf {
    let path = bin.join(name);
    fs::write(
        &path,
        format!("#!/bin/sh\ncat >/dev/null\necho '{output}'\n"),
    )
    .expect("write a lying tool");
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    path
}

fn digest(path: &std::path::Path) -> runner::transport::FileDigest {
    runner::transport::FileDigest::of_file(path).expect("digest of the source")
}
