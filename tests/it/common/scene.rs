//! The setup most end-to-end tests share: a folder, a playbook with local targets and SSH
//! targets on real sshd servers (this same machine, so a test sees what a step did), and steps
//! given as a list.
//!
//! ```ignore
//! let scene = Scene::new("fan-out")
//!     .ssh("a", "127.0.0.41")
//!     .local("here")
//!     .steps([step("prepare", "a", "echo prepare >> {dir}/ledger")]);
//! scene.apply().expect_exit(0).run();
//! assert_eq!(scene.lines("ledger"), ["prepare"]);
//! ```
//!
//! `{dir}` in variables and steps stands for the scene's folder. A scene is rebuilt by value
//! (`let scene = scene.var(..)`), and its playbook is written again before every run.

use std::fs;
use std::path::{Path, PathBuf};

use super::run::{self, Attempt, Run};
use super::Sshd;

/// YAML single-quoted scalar: everything literal, `'` doubled.
pub fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A `steps:` entry.
pub struct Step {
    id: String,
    keys: Vec<String>,
}

/// The step `id` running `run` (a shell command) on `on` (a target, a group, or `[a, b]`).
pub fn step(id: &str, on: &str, run: &str) -> Step {
    Step {
        id: id.to_string(),
        keys: Vec::new(),
    }
    .key("on", on)
    .text("run", run)
}

/// The step `id` with no keys yet (an `upload`, a `script`: give them with `key`).
pub fn bare(id: &str) -> Step {
    Step {
        id: id.to_string(),
        keys: Vec::new(),
    }
}

/// The manual step `id`: the operator does what `instructions` say.
pub fn manual(id: &str, instructions: &str) -> Step {
    Step {
        id: id.to_string(),
        keys: Vec::new(),
    }
    .text("manual", instructions)
}

impl Step {
    /// Another key of the step; `value` is YAML as it stands (`key("retries", "2")`).
    pub fn key(mut self, key: &str, value: &str) -> Step {
        self.keys.push(format!("    {key}: {value}\n"));
        self
    }

    /// A key whose value is a literal string (`rollback`, `check`, commands).
    pub fn text(self, key: &str, value: &str) -> Step {
        let value = q(value);
        self.key(key, &value)
    }

    fn yaml(&self) -> String {
        let mut y = format!("  - id: {}\n", self.id);
        for k in &self.keys {
            y.push_str(k);
        }
        y
    }
}

struct Target {
    name: String,
    sshd: Option<Sshd>,
    /// The login key and known_hosts file, when not the server's own.
    key: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    keys: String,
    vars: Vec<(String, String)>,
}

/// See the module documentation.
pub struct Scene {
    dir: tempfile::TempDir,
    file: String,
    name: String,
    window: String,
    top: String,
    targets: Vec<Target>,
    steps: Vec<Step>,
}

impl Scene {
    /// An empty scene: a fresh folder, a playbook `name` without business hours.
    pub fn new(name: &str) -> Scene {
        Scene {
            dir: tempfile::Builder::new()
                .prefix("runner-scene-")
                .tempdir()
                .expect("create the scene's folder"),
            file: "cutover.yaml".to_string(),
            name: name.to_string(),
            window: "window:\n  business_hours: []\n".to_string(),
            top: String::new(),
            targets: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// The playbook's file name in the folder (`cutover.yaml` unless set).
    pub fn file_name(mut self, name: &str) -> Scene {
        self.file = name.to_string();
        self
    }

    /// The playbook's `name:`.
    pub fn name(mut self, name: &str) -> Scene {
        self.name = name.to_string();
        self
    }

    /// The whole `window:` section (YAML from `window:` on).
    pub fn window(mut self, yaml: &str) -> Scene {
        self.window = yaml.to_string();
        self
    }

    /// More top-level YAML (`on_failure:`, `groups:`, `notify:`...), written before `targets:`.
    pub fn top(mut self, yaml: &str) -> Scene {
        self.top.push_str(yaml);
        self
    }

    /// An ssh target `name` on a new sshd listening on `ip`.
    pub fn ssh(self, name: &str, ip: &str) -> Scene {
        self.ssh_on(name, Sshd::start(ip))
    }

    /// An ssh target `name` on a server the test started (e.g. with extra configuration).
    pub fn ssh_on(mut self, name: &str, sshd: Sshd) -> Scene {
        self.targets.push(Target {
            name: name.to_string(),
            sshd: Some(sshd),
            key: None,
            known_hosts: None,
            keys: String::new(),
            vars: Vec::new(),
        });
        self
    }

    /// Ssh target `name` now on `sshd` (its address changed); the old server stops.
    pub fn ssh_to(mut self, name: &str, sshd: Sshd) -> Scene {
        self.target_mut(name).sshd = Some(sshd);
        self
    }

    /// Target `old` is called `new` from now on.
    pub fn rename_target(mut self, old: &str, new: &str) -> Scene {
        self.target_mut(old).name = new.to_string();
        self
    }

    /// A local target `name`.
    pub fn local(self, name: &str) -> Scene {
        self.target(name, "    transport: local\n")
    }

    /// A target `name` given by its keys (YAML lines indented by four spaces).
    pub fn target(mut self, name: &str, yaml: &str) -> Scene {
        self.targets.push(Target {
            name: name.to_string(),
            sshd: None,
            key: None,
            known_hosts: None,
            keys: yaml.to_string(),
            vars: Vec::new(),
        });
        self
    }

    /// More keys of target `name` (YAML lines indented by four spaces).
    pub fn target_keys(mut self, name: &str, yaml: &str) -> Scene {
        self.target_mut(name).keys.push_str(yaml);
        self
    }

    /// Ssh target `name` logs in with this key instead of the server's test key.
    pub fn login_key(mut self, name: &str, key: &Path) -> Scene {
        self.target_mut(name).key = Some(key.to_path_buf());
        self
    }

    /// Ssh target `name` checks host keys against this file instead of the server's.
    pub fn known_hosts(mut self, name: &str, file: &Path) -> Scene {
        self.target_mut(name).known_hosts = Some(file.to_path_buf());
        self
    }

    /// A variable of target `name` (a literal string; `{dir}` is the scene's folder). Setting
    /// it again replaces it.
    pub fn var(mut self, name: &str, key: &str, value: &str) -> Scene {
        let value = self.expand(value);
        let vars = &mut self.target_mut(name).vars;
        vars.retain(|(k, _)| k != key);
        vars.push((key.to_string(), value));
        self
    }

    pub fn step(mut self, s: Step) -> Scene {
        self.steps.push(s);
        self
    }

    pub fn steps(mut self, steps: impl IntoIterator<Item = Step>) -> Scene {
        self.steps.extend(steps);
        self
    }

    /// The playbook's steps from now on are `steps`.
    pub fn set_steps(&mut self, steps: impl IntoIterator<Item = Step>) {
        self.steps = steps.into_iter().collect();
    }

    /// Drops the steps given so far (to give the playbook other steps for the next run).
    pub fn without_steps(mut self) -> Scene {
        self.steps.clear();
        self
    }

    fn target_mut(&mut self, name: &str) -> &mut Target {
        self.targets
            .iter_mut()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no target `{name}` in the scene"))
    }

    fn expand(&self, text: &str) -> String {
        text.replace("{dir}", &self.dir.path().display().to_string())
    }

    /// The playbook.
    pub fn yaml(&self) -> String {
        let mut y = format!(
            "name: {}\n{}{}targets:\n",
            q(&self.name),
            self.window,
            self.top
        );
        for t in &self.targets {
            y.push_str(&format!("  {}:\n", t.name));
            if let Some(sshd) = &t.sshd {
                let key = t.key.clone().unwrap_or_else(|| sshd.user_key_path());
                let known_hosts = t
                    .known_hosts
                    .clone()
                    .unwrap_or_else(|| sshd.known_hosts_path());
                y.push_str(&format!(
                    "    transport: ssh\n    host: {}\n    port: {}\n    user: {}\n    key: {}\n    known_hosts: {}\n",
                    q(sshd.host()),
                    sshd.port(),
                    q(&sshd.user()),
                    q(&key.display().to_string()),
                    q(&known_hosts.display().to_string()),
                ));
            }
            y.push_str(&t.keys);
            if !t.vars.is_empty() {
                y.push_str("    vars:\n");
                for (k, v) in &t.vars {
                    y.push_str(&format!("      {k}: {}\n", q(v)));
                }
            }
        }
        y.push_str("steps:\n");
        for s in &self.steps {
            y.push_str(&self.expand(&s.yaml()));
        }
        y
    }

    /// Writes the playbook (unless it is there as it is: a runner may be reading it); returns
    /// its path.
    pub fn write(&self) -> PathBuf {
        let path = self.path(&self.file);
        let yaml = self.yaml();
        if fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
            fs::write(&path, yaml).expect("write the playbook");
        }
        path
    }

    /// The playbook's file name.
    pub fn playbook(&self) -> &str {
        &self.file
    }

    /// The scene's folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A file in the scene's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// The lines of a file in the folder; none when it does not exist (a ledger whose step
    /// never ran).
    pub fn lines(&self, name: &str) -> Vec<String> {
        let path = self.path(name);
        match fs::read_to_string(&path) {
            Ok(text) => text.lines().map(str::to_string).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("read {}: {e}", path.display()),
        }
    }

    /// The server behind ssh target `name`.
    pub fn sshd(&self, name: &str) -> &Sshd {
        self.targets
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| t.sshd.as_ref())
            .unwrap_or_else(|| panic!("no ssh target `{name}` in the scene"))
    }

    /// The server behind ssh target `name`, to stop or restart it.
    pub fn sshd_mut(&mut self, name: &str) -> &mut Sshd {
        self.targets
            .iter_mut()
            .find(|t| t.name == name)
            .and_then(|t| t.sshd.as_mut())
            .unwrap_or_else(|| panic!("no ssh target `{name}` in the scene"))
    }

    /// The playbook's journal.
    pub fn journal(&self) -> PathBuf {
        run::journal_path(self.dir(), &self.file)
    }

    /// The journal's attempts of `step`, in the order they started.
    pub fn attempts(&self, step: &str) -> Vec<Attempt> {
        run::attempts(&self.journal(), step)
    }

    /// A run in the scene's folder with `args`, after writing the playbook.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.write();
        Run::at(self.dir()).journal_of(&self.file).args(args)
    }

    /// `runner apply <playbook>`, plus `extra` arguments.
    pub fn apply_with(&self, extra: &[&str]) -> Run {
        let mut args = vec!["apply", self.file.as_str()];
        args.extend_from_slice(extra);
        self.run(args)
    }

    /// `runner mark <playbook> <pair> <what>`, which must succeed.
    #[track_caller]
    pub fn mark(&self, pair: &str, what: &str) -> run::Ran {
        self.run(["mark", self.file.as_str(), pair, what])
            .expect_exit(0)
            .run()
    }

    /// `runner apply <playbook>`.
    pub fn apply(&self) -> Run {
        self.apply_with(&[])
    }
}
