//! Playbook loading and validation on arbitrary bytes: never a panic, bounded time and memory.
//!
//! The loader reads a file (it needs a path for positions, relative files and hashes), so each
//! input is written to one scratch file first. What loads is also scheduled, since `plan` is
//! the next thing a reviewer runs on a playbook that validates.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("runner-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch folder");
        dir.join("playbook.yaml")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    if std::fs::write(path, data).is_err() {
        return;
    }
    match runner::playbook::load(path) {
        // Rendering the diagnostics exercises the positions and source lines they point at.
        Err(e) => {
            drop(e.to_string());
            // A message names what would be valid, never one of the loader's own types: such a
            // name may appear only when the input itself contains it (quoted back).
            let input = String::from_utf8_lossy(data);
            for d in &e.0 {
                for internal in ["struct Raw", "enum Raw"] {
                    assert!(
                        !d.message.contains(internal) || input.contains(internal),
                        "internal type name in: {}",
                        d.message
                    );
                }
            }
        }
        Ok(pb) => {
            let start = jiff::Timestamp::from_second(1_796_000_000).expect("a valid instant");
            let _ = runner::plan::build(&pb, start);
        }
    }
});
