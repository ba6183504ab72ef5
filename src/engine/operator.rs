//! The person at the run, as the engine asks them. The engine never reads the terminal: it
//! asks an [`Operator`], and whoever owns the terminal (the reporter that draws the bars)
//! shows the question and reads the answer.

use std::sync::Mutex;

/// A manual step waiting for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualTask {
    pub step: String,
    pub title: String,
    pub instructions: String,
}

/// What the operator answered about a manual step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManualAnswer {
    /// The step is done.
    Done,
    /// The step failed.
    Fail,
    /// No answer now (no terminal, or the input ended): stop and wait, exit 5.
    Wait,
}

/// A yes/no question before something is done (rollback's confirmation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// What would be done, shown before the question.
    pub plan: String,
    /// The word that says yes (`yes`).
    pub word: String,
}

/// What the operator said to a confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    Yes,
    No,
    /// Nobody can answer here (no terminal).
    NoOperator,
}

/// Someone the engine can ask. Called from the engine's thread while the run's other threads
/// may still emit events.
pub trait Operator: Send + Sync {
    /// Whether a person can answer now; when false, manual steps stop with exit 5 and
    /// confirmations need `--yes`.
    fn present(&self) -> bool;

    /// Shows a manual step and waits for `done`, `fail` or the end of input.
    fn manual(&self, task: &ManualTask) -> ManualAnswer;

    /// Asks a confirmation.
    fn confirm(&self, question: &Confirmation) -> Confirmed;
}

/// No person at the run (no terminal, a scheduler, a pipe).
pub struct Absent;

impl Operator for Absent {
    fn present(&self) -> bool {
        false
    }

    fn manual(&self, _: &ManualTask) -> ManualAnswer {
        ManualAnswer::Wait
    }

    fn confirm(&self, _: &Confirmation) -> Confirmed {
        Confirmed::NoOperator
    }
}

/// An operator whose answers are given in advance, and who remembers what was asked (tests,
/// rehearsals).
pub struct Scripted {
    manual: Mutex<Vec<ManualAnswer>>,
    confirm: Mutex<Vec<Confirmed>>,
    asked: Mutex<Vec<String>>,
}

impl Scripted {
    /// Answers manual steps with `manual` and confirmations with `confirm`, in order; once
    /// they run out, `Wait` and `No`.
    pub fn new(manual: Vec<ManualAnswer>, confirm: Vec<Confirmed>) -> Scripted {
        Scripted {
            manual: Mutex::new(manual),
            confirm: Mutex::new(confirm),
            asked: Mutex::new(Vec::new()),
        }
    }

    /// The steps and confirmations asked so far ("manual STEP", "confirm").
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }

    fn note(&self, what: String) {
        if let Ok(mut a) = self.asked.lock() {
            a.push(what);
        }
    }
}

impl Operator for Scripted {
    fn present(&self) -> bool {
        true
    }

    fn manual(&self, task: &ManualTask) -> ManualAnswer {
        self.note(format!("manual {}", task.step));
        match self.manual.lock() {
            Ok(mut m) if !m.is_empty() => m.remove(0),
            _ => ManualAnswer::Wait,
        }
    }

    fn confirm(&self, _: &Confirmation) -> Confirmed {
        self.note("confirm".into());
        match self.confirm.lock() {
            Ok(mut c) if !c.is_empty() => c.remove(0),
            _ => Confirmed::No,
        }
    }
}

/// How a terminal operator reads one answer: the valid words and the reply to anything else.
/// Kept apart from the terminal so it can be tested without one.
pub fn parse_manual(answer: &str) -> Result<ManualAnswer, String> {
    match answer.trim() {
        "done" => Ok(ManualAnswer::Done),
        "fail" => Ok(ManualAnswer::Fail),
        "" => Err("type `done` when it is finished, or `fail`".into()),
        other => Err(format!(
            "`{other}` is not an answer here: type `done` when it is finished, or `fail` if it failed (end of input stops the run, to confirm later with `runner mark`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_answer_gets_a_reply_naming_the_valid_ones() {
        assert_eq!(parse_manual(" done\n"), Ok(ManualAnswer::Done));
        assert_eq!(parse_manual("fail"), Ok(ManualAnswer::Fail));
        let reply = parse_manual("ok").unwrap_err();
        assert!(reply.contains("`ok` is not an answer"), "{reply}");
        assert!(
            reply.contains("`done`") && reply.contains("`fail`"),
            "{reply}"
        );
    }

    #[test]
    fn a_scripted_operator_answers_in_order_then_waits() {
        let o = Scripted::new(vec![ManualAnswer::Done], vec![Confirmed::Yes]);
        let t = ManualTask {
            step: "disk".into(),
            title: "disk".into(),
            instructions: "label it".into(),
        };
        assert_eq!(o.manual(&t), ManualAnswer::Done);
        assert_eq!(o.manual(&t), ManualAnswer::Wait);
        let c = Confirmation {
            plan: String::new(),
            word: "yes".into(),
        };
        assert_eq!(o.confirm(&c), Confirmed::Yes);
        assert_eq!(o.confirm(&c), Confirmed::No);
        assert_eq!(
            o.asked(),
            vec!["manual disk", "manual disk", "confirm", "confirm"]
        );
    }
}
