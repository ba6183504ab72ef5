//! Uploads are written in chunks and verified: an empty file works, a missing directory is named, a
//! corrupted upload is detected.

use super::*;

#[test]
fn upload_is_written_in_chunks_and_verified() {
    let srv = start("127.0.0.37");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("payload.bin");
    let data = pseudo_random(300_000);
    std::fs::write(&src, &data).unwrap();
    let mut t = transport(&srv);
    let mut progress = Vec::new();
    t.upload(
        &src,
        &digest(&src),
        "C:\\Temp\\payload.bin",
        Shell::Cmd,
        &mut |n| {
            progress.push(n);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(srv.file("C:\\Temp\\payload.bin").unwrap(), data);
    assert!(progress.len() >= 3, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(progress.last(), Some(&300_000));
    // stdin is a pipe for the upload (a console would not deliver it to `$input`).
    let command = srv
        .requests()
        .into_iter()
        .find(|r| r.action == "Command")
        .unwrap();
    let options = winrm_server::parse_request(&command.body).options;
    assert_eq!(
        options.get("WINRS_CONSOLEMODE_STDIN").map(String::as_str),
        Some("FALSE")
    );
    let sends = srv.requests().iter().filter(|r| r.action == "Send").count();
    assert!(sends >= 3, "{sends}");
    for r in srv.requests() {
        assert!(r.body.len() < soap::MAX_ENVELOPE_SIZE, "{}", r.body.len());
    }
    assert_eq!(srv.open_shells(), 0);
}

#[test]
fn empty_upload_works() {
    let srv = start("127.0.0.38");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("empty");
    std::fs::write(&src, b"").unwrap();
    let mut t = transport(&srv);
    t.upload(
        &src,
        &digest(&src),
        "C:\\Temp\\empty",
        Shell::Cmd,
        &mut |_| Ok(()),
    )
    .unwrap();
    assert_eq!(srv.file("C:\\Temp\\empty").unwrap(), b"");
}

#[test]
fn upload_to_a_missing_directory_names_it() {
    let srv = start("127.0.0.39");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a");
    std::fs::write(&src, b"abc").unwrap();
    let mut t = transport(&srv);
    let e = t
        .upload(
            &src,
            &digest(&src),
            "D:\\nope\\a.txt",
            Shell::Cmd,
            &mut |_| Ok(()),
        )
        .unwrap_err();
    match e {
        TransportError::UploadParentMissing { parent, .. } => assert_eq!(parent, "D:\\nope"),
        other => panic!("{other:?}"),
    }
    assert_eq!(srv.open_shells(), 0);
}

#[test]
fn a_corrupted_upload_is_detected() {
    let srv = start("127.0.0.40");
    srv.set_corrupt_uploads(true);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a");
    std::fs::write(&src, b"important bytes").unwrap();
    let mut t = transport(&srv);
    // A good copy first: the corrupted one must not replace it.
    srv.set_corrupt_uploads(false);
    let old = dir.path().join("old");
    std::fs::write(&old, b"the old, longer content").unwrap();
    t.upload(&old, &digest(&old), "C:\\Temp\\a", Shell::Cmd, &mut |_| {
        Ok(())
    })
    .expect("the first upload");
    srv.set_corrupt_uploads(true);
    let e = t
        .upload(&src, &digest(&src), "C:\\Temp\\a", Shell::Cmd, &mut |_| {
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(e, TransportError::UploadVerify { .. }), "{e:?}");
    assert_eq!(
        srv.file("C:\\Temp\\a").as_deref(),
        Some(&b"the old, longer content"[..]),
        "a failed upload replaced the destination"
    );
}
