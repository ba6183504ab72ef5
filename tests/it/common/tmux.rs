//! A tmux server of its own for one test: a real terminal that can be closed.

use std::path::Path;
use std::process::Command;

/// A tmux server of its own for one test; killed when dropped.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn new(dir: &Path) -> Tmux {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "runner-test".into());
        Tmux {
            socket: format!("runner-{name}"),
        }
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux runs (scripts/test.sh installs it)")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

impl Tmux {
    /// What the pane `target` shows now, as text.
    pub fn capture(&self, target: &str) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", target]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `cmd` in a detached 120x40 session named `night`.
    pub fn start(&self, cmd: &str) {
        let out = self.run(&[
            "new-session",
            "-d",
            "-s",
            "night",
            "-x",
            "120",
            "-y",
            "40",
            cmd,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// What the screen of session `night` shows now.
    pub fn screen(&self) -> String {
        self.capture("night")
    }

    /// Types `text` and Enter into session `night`.
    pub fn type_line(&self, text: &str) {
        let out = self.run(&["send-keys", "-t", "night", "-l", text]);
        assert!(out.status.success(), "tmux send-keys failed");
        let out = self.run(&["send-keys", "-t", "night", "Enter"]);
        assert!(out.status.success(), "tmux send-keys failed");
    }
}
