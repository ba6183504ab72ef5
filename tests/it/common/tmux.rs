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
}
