//! Hostile or broken input is refused safely: no panic on garbage, no alias bomb, no literal secret
//! echoed, nothing written for an invalid playbook, exit 2 for a missing file, and a byte order
//! mark is fine.

use super::*;

#[test]
fn a_playbook_saved_with_a_byte_order_mark_is_valid() {
    // Windows editors write a UTF-8 byte order mark at the start of the file.
    let r = validate(&format!("\u{feff}{BASE}"))
        .expect_exit(0)
        .expect_stdout_contains("valid")
        .run();
    Run::at(r.path())
        .args(["plan", "c.yaml"])
        .expect_exit(0)
        .run();
}

#[test]
fn a_literal_secret_is_refused_without_echoing_it() {
    let text = BASE.replace(
        "    user: admin\n",
        "    user: admin\n    password: Sup3rS3cret!\n",
    );
    invalid(&text)
        .expect_stderr_contains("`password` is a literal secret")
        .expect_stderr_contains("{ env: VARIABLE }")
        .expect_stderr_lacks("Sup3rS3cret!")
        .expect_stdout_lacks("Sup3rS3cret!")
        .run();
}

#[test]
fn an_alias_bomb_is_refused() {
    let mut text = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut prev = 'a';
    for c in 'b'..='j' {
        text.push_str(&format!(
            "{c}: &{c} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
        prev = c;
    }
    invalid(&text).run();
}

#[test]
fn garbage_input_never_panics() {
    for text in [
        "",
        "---\n",
        "- a\n- b\n",
        "name: 3\nwindow: 4\nsteps: 5\n",
        "\u{0}\u{1}",
        "steps:\n  - {}\n",
        "{{{{",
    ] {
        invalid(text)
            .note(format!("input {text:?}"))
            .expect_stderr_lacks("panicked")
            .run();
    }
}

#[test]
fn invalid_playbooks_write_nothing_even_for_apply() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "c.yaml",
        &BASE.replace("on: web", "on: nowhere"),
    );
    for cmd in [
        vec!["validate", "c.yaml"],
        vec!["plan", "c.yaml"],
        vec!["apply", "c.yaml"],
    ] {
        Run::at(dir.path())
            .args(&cmd)
            .note(format!("{cmd:?}"))
            .expect_exit(2)
            .run();
    }
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("c.yaml")]);
}

#[test]
fn a_missing_file_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    Run::at(dir.path())
        .args(["validate", "nope.yaml"])
        .expect_exit(2)
        .expect_stderr_contains("nope.yaml")
        .run();
}
