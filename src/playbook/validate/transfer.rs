//! Validation of the steps that move files between machines through the runner: `copy`
//! (target to target, naming both itself) and `fetch` (target to this machine).

use super::*;
use crate::playbook::raw::RawCopy;

impl Validator<'_> {
    /// A copy's one pair target is `copy.to`; it names its targets itself and has no `on`.
    /// Returns `on` and the pair targets, as `step_on` does.
    pub(super) fn copy_on(
        &mut self,
        p: &dyn Fn(&str) -> Vec<Seg>,
        s: &RawStep,
        c: &RawCopy,
        raw: &RawPlaybook,
    ) -> (Vec<String>, Vec<String>) {
        if s.on.is_some() {
            self.err(
                &p("on"),
                "a copy step has no `on`: it names its targets in `copy.from` and `copy.to`",
                Some(
                    "remove `on`: the file is read on `copy.from` and written on `copy.to`".into(),
                ),
            );
        }
        let mut valid = true;
        for (k, name) in [("from", &c.from), ("to", &c.to)] {
            if raw.targets.contains_key(name) {
                continue;
            }
            valid = false;
            let mut q = p("copy");
            q.push(key(k));
            let help = if raw.groups.contains_key(name) {
                "a copy names one target on each side: copy to each target of the group with a step of its own".to_string()
            } else {
                suggestion_or_choices(name, raw.targets.keys().map(String::as_str))
            };
            self.err(
                &q,
                format!("`copy.{k}` names `{name}`, which is not a target"),
                Some(help),
            );
        }
        let pair = if valid {
            vec![c.to.clone()]
        } else {
            Vec::new()
        };
        (pair.clone(), pair)
    }

    /// A copy's or a fetch's action: its paths given, without NUL bytes.
    pub(super) fn transfer_action(
        &mut self,
        p: &dyn Fn(&str) -> Vec<Seg>,
        s: &RawStep,
    ) -> Option<Action> {
        let (kind, path, dest, dest_help) = match (&s.copy, &s.fetch) {
            (Some(c), _) => (
                "copy",
                &c.path,
                &c.dest,
                "the destination path on `copy.to`",
            ),
            (None, Some(f)) => (
                "fetch",
                &f.path,
                &f.dest,
                "the local path, relative to the folder of the file that names the step (in a procedure, the procedure's)",
            ),
            (None, None) => return None,
        };
        let before = self.diags.len();
        for (k, value, help) in [
            (
                "path",
                path,
                "the path of the file on the target it is read from",
            ),
            ("dest", dest, dest_help),
        ] {
            let mut q = p(kind);
            q.push(key(k));
            if value.trim().is_empty() {
                self.err(
                    &q,
                    format!("`{kind}.{k}` is empty"),
                    Some(format!("give {help}")),
                );
            } else if value.contains('\0') {
                self.err(
                    &q,
                    format!("`{kind}.{k}` contains a NUL byte"),
                    Some(format!("give {help}")),
                );
            }
        }
        if self.diags.len() != before {
            return None;
        }
        Some(match &s.copy {
            Some(c) => Action::Copy {
                from: c.from.clone(),
                path: c.path.clone(),
                to: c.to.clone(),
                dest: c.dest.clone(),
            },
            None => Action::Fetch {
                path: path.clone(),
                dest: dest.clone(),
            },
        })
    }

    /// A fetch's local destination for one target: rendered, resolved against the folder of
    /// the file that names it, and not a folder.
    pub(super) fn fetch_dest(&mut self, at: &[Seg], rendered: &str) -> Option<PathBuf> {
        let mut full = self.dir_at(at).join(expand_home(Path::new(rendered)));
        if self.src.locate_origin(at).0 != 0 {
            full = super::super::compose::normalize(&full);
        }
        if rendered.trim().is_empty() || rendered.ends_with(['/', '\\']) || full.is_dir() {
            self.err(
                at,
                format!("`fetch.dest` is a folder ({}), not a file", full.display()),
                Some("give the file's name too, e.g. `dest: exports/inventory-{{ target.name }}.csv`".into()),
            );
            return None;
        }
        Some(full)
    }

    /// With several targets, each fetch needs a file of its own: two targets writing one
    /// file would leave whichever came last.
    pub(super) fn fetch_dests_differ(
        &mut self,
        p: &dyn Fn(&str) -> Vec<Seg>,
        rendered: &[Rendered],
    ) -> Option<()> {
        let mut seen: BTreeMap<&Path, &str> = BTreeMap::new();
        for r in rendered {
            let RenderedAction::Fetch { dest, .. } = &r.action else {
                continue;
            };
            if let Some(first) = seen.insert(dest, &r.target) {
                let mut q = p("fetch");
                q.push(key("dest"));
                self.err(
                    &q,
                    format!(
                        "`fetch.dest` is the same file for targets `{first}` and `{}`: {}",
                        r.target,
                        dest.display()
                    ),
                    Some("with several targets each needs a file of its own: put the target's name in it, e.g. `dest: inventory-{{ target.name }}.csv`".into()),
                );
                return None;
            }
        }
        Some(())
    }
}
