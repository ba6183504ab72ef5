//! A step changed after it succeeded is refused until accepted, and runs again only after `mark
//! --retry`.

use super::*;

#[test]
fn changed_step_is_refused_until_accepted_and_reruns_only_after_mark_retry() {
    let mut p = Play::new(&["127.0.3.7"]);
    let prep = |text: &str| {
        step(
            "prep",
            "h1",
            &format!("echo start >> {{dir}}/prep.ledger; echo {text} >> {{dir}}/prep.text"),
        )
    };
    // `next` fails until its go file exists, so the first apply stops after `prep`.
    let next = || {
        step(
            "next",
            "h1",
            "test -f {dir}/next.go && echo start >> {dir}/next.ledger",
        )
    };
    p.write([prep("first"), next()]);
    p.apply(&[]).expect_exit(1).run();
    assert_eq!(p.ledger("prep"), (1, 0));

    p.write([prep("second"), next()]);
    std::fs::write(p.file("next.go"), "").unwrap();
    p.apply(&[])
        .expect_exit(4)
        .expect_stderr_contains("`prep` on `h1`")
        .expect_stderr_contains("--accept-changed")
        .expect_stderr_lacks("`next`")
        .run();
    assert_eq!(p.ledger("prep"), (1, 0));
    assert_eq!(p.ledger("next"), (0, 0), "nothing ran");

    p.apply(&["--accept-changed"]).expect_exit(0).run();
    assert_eq!(
        p.ledger("prep"),
        (1, 0),
        "the accepted step was not run again"
    );
    assert_eq!(p.ledger("next"), (1, 0));

    // The acceptance is remembered: the next apply neither asks again nor runs anything.
    p.apply(&[]).expect_exit(0).run();
    assert_eq!(p.ledger("prep"), (1, 0));

    p.mark("prep", "retry");
    p.apply(&[]).expect_exit(0).run();
    assert_eq!(p.ledger("prep"), (2, 0));
    assert_eq!(
        std::fs::read_to_string(p.file("prep.text")).unwrap(),
        "first\nsecond\n",
        "the changed command ran"
    );
    assert_eq!(p.ledger("next"), (1, 0), "the unchanged success was kept");
}
