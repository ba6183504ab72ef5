//! What a notification says: one [`Notice`], rendered as a CloudEvents 1.0 JSON event
//! (webhooks), as a readable text with a title (ntfy, email).

use std::fmt::Write;

use jiff::Timestamp;
use serde::Serialize;

use super::config::NotifyEvent;

/// One notification, as derived from the engine's events. Every text in it is already masked.
#[derive(Debug, Clone)]
pub struct Notice {
    pub event: NotifyEvent,
    /// Unique per notification (the run id and a counter); the tries of one delivery and the
    /// copies sent to several sinks share it.
    pub id: String,
    /// `runner://<host>/<playbook file stem>`.
    pub source: String,
    pub time: Timestamp,
    pub data: Data,
}

/// The facts of a notification: the `data` of the CloudEvent.
#[derive(Debug, Clone, Serialize)]
pub struct Data {
    /// The playbook's `name`.
    pub playbook: String,
    /// The playbook file, as the runner was given it.
    pub playbook_file: String,
    pub run_id: String,
    /// The machine the runner runs on.
    pub host: String,
    /// One line: what happened.
    pub summary: String,
    pub step: Option<String>,
    pub step_title: Option<String>,
    pub target: Option<String>,
    pub exit_code: Option<i64>,
    /// How the run ended (run-finished, run-stopped), e.g. `succeeded`, `failed`.
    pub outcome: Option<String>,
    /// When business hours begin next (window-closing, night-done, run-stopped).
    pub business_hours_at: Option<String>,
    /// When the work may go on (night-done, run-stopped).
    pub next_start: Option<String>,
    /// The last lines of the step's output on that target, secrets masked.
    pub output: Vec<String>,
    /// What to do next: the exact command, or that nothing is needed.
    pub next: String,
}

/// RFC 3339 in UTC to the second, e.g. `2026-11-30T23:00:00Z`.
pub fn utc(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    time: String,
    datacontenttype: &'static str,
    data: &'a Data,
}

/// The content type of a structured-mode CloudEvent.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json; charset=utf-8";

impl Notice {
    /// `step` or `step@target`, the CloudEvent's `subject`.
    pub fn subject(&self) -> Option<String> {
        match (&self.data.step, &self.data.target) {
            (Some(s), Some(t)) => Some(format!("{s}@{t}")),
            (Some(s), None) => Some(s.clone()),
            _ => None,
        }
    }

    /// The CloudEvents 1.0 structured-mode JSON.
    pub fn cloud_event_json(&self) -> String {
        let ce = CloudEvent {
            specversion: "1.0",
            id: &self.id,
            source: &self.source,
            kind: self.event.cloud_type(),
            subject: self.subject(),
            time: utc(self.time),
            datacontenttype: "application/json",
            data: &self.data,
        };
        serde_json::to_string(&ce).unwrap_or_else(|_| "{}".into())
    }

    /// A short title: `<playbook>: <summary>`.
    pub fn title(&self) -> String {
        format!("{}: {}", self.data.playbook, self.data.summary)
    }

    /// The mail subject.
    pub fn mail_subject(&self) -> String {
        format!("[runner] {}", self.title())
    }

    /// The readable message: the summary, the facts, the output and what to do next.
    pub fn text(&self) -> String {
        let d = &self.data;
        let mut o = String::new();
        let _ = writeln!(o, "{}\n", d.summary);
        let _ = writeln!(o, "Event:     {}", self.event);
        let _ = writeln!(o, "Playbook:  {} ({})", d.playbook, d.playbook_file);
        let _ = writeln!(o, "Run:       {} on {}", d.run_id, d.host);
        if let Some(s) = &d.step {
            match &d.step_title {
                Some(t) if t != s => {
                    let _ = writeln!(o, "Step:      {s} ({t})");
                }
                _ => {
                    let _ = writeln!(o, "Step:      {s}");
                }
            }
        }
        if let Some(t) = &d.target {
            let _ = writeln!(o, "Target:    {t}");
        }
        if let Some(c) = d.exit_code {
            let _ = writeln!(o, "Exit code: {c}");
        }
        if let Some(oc) = &d.outcome {
            let _ = writeln!(o, "Outcome:   {oc}");
        }
        if let Some(b) = &d.business_hours_at {
            let _ = writeln!(o, "Business hours begin: {b}");
        }
        if let Some(n) = &d.next_start {
            let _ = writeln!(o, "May go on: {n}");
        }
        let _ = writeln!(o, "Time:      {}", utc(self.time));
        if !d.output.is_empty() {
            let _ = writeln!(o, "\nLast output:");
            for l in &d.output {
                let _ = writeln!(o, "  {l}");
            }
        }
        let _ = writeln!(o, "\nNext: {}", d.next);
        o
    }

    /// ntfy's Priority header: high when a person should look now.
    pub fn ntfy_priority(&self) -> &'static str {
        match self.event {
            NotifyEvent::StepFailed | NotifyEvent::OperatorNeeded => "high",
            NotifyEvent::WindowClosing | NotifyEvent::RunStopped => "default",
            NotifyEvent::NightDone => "default",
            NotifyEvent::RunFinished if self.data.outcome.as_deref() == Some("succeeded") => {
                "default"
            }
            NotifyEvent::RunFinished => "high",
        }
    }

    /// ntfy's Tags header (the first known emoji name becomes an icon).
    pub fn ntfy_tags(&self) -> String {
        let icon = match self.event {
            NotifyEvent::StepFailed => "rotating_light",
            NotifyEvent::OperatorNeeded => "raising_hand",
            NotifyEvent::WindowClosing => "hourglass",
            NotifyEvent::NightDone => "crescent_moon",
            NotifyEvent::RunStopped => "stop_sign",
            NotifyEvent::RunFinished if self.data.outcome.as_deref() == Some("succeeded") => {
                "white_check_mark"
            }
            NotifyEvent::RunFinished => "warning",
        };
        format!("{icon},runner,{}", self.event)
    }
}

/// A header value as printable ASCII: RFC 2047 base64 when the text is not (ntfy decodes it).
pub fn header_text(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line
        .chars()
        .all(|c| c.is_ascii() && !c.is_ascii_control())
    {
        one_line
    } else {
        use base64::Engine;
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(one_line.as_bytes())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> Notice {
        Notice {
            event: NotifyEvent::StepFailed,
            id: "run-1".into(),
            source: "runner://jump/acme".into(),
            time: "2026-11-30T23:00:00.5Z".parse().unwrap(),
            data: Data {
                playbook: "Acme".into(),
                playbook_file: "acme.yaml".into(),
                run_id: "run".into(),
                host: "jump".into(),
                summary: "step `copy` failed on `srv` (exit code 3)".into(),
                step: Some("copy".into()),
                step_title: None,
                target: Some("srv".into()),
                exit_code: Some(3),
                outcome: None,
                business_hours_at: None,
                next_start: None,
                output: vec!["boom".into()],
                next: "runner apply acme.yaml".into(),
            },
        }
    }

    #[test]
    fn cloud_event_has_the_required_attributes() {
        let v: serde_json::Value = serde_json::from_str(&notice().cloud_event_json()).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "runner.step.failed");
        assert_eq!(v["time"], "2026-11-30T23:00:00Z");
        assert_eq!(v["subject"], "copy@srv");
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["data"]["exit_code"], 3);
    }

    #[test]
    fn header_text_stays_ascii() {
        assert_eq!(header_text("a\nb"), "a b");
        assert_eq!(header_text("Müller"), "=?UTF-8?B?TcO8bGxlcg==?=");
    }
}
