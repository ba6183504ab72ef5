//! Validation of the `notify:` section: destinations, events, URLs and addresses.

use super::*;

impl Validator<'_> {
    /// The `notify:` section: one destination per entry, known events, URLs and addresses
    /// that parse, SMTP credentials by reference.
    pub(super) fn notify(&mut self, raw: &[RawSink]) -> Vec<Sink> {
        let mut out = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let base = vec![key("notify"), Seg::Index(i)];
            let p = |k: &str| {
                let mut v = base.clone();
                v.push(key(k));
                v
            };
            let before = self.diags.len();
            let given: Vec<&str> = [
                ("webhook", r.webhook.is_some()),
                ("ntfy", r.ntfy.is_some()),
                ("email", r.email.is_some()),
            ]
            .into_iter()
            .filter_map(|(k, present)| present.then_some(k))
            .collect();
            match given.len() {
                0 => self.err(&base, "a notify entry says nowhere to send", Some("give exactly one of `webhook: URL`, `ntfy: URL` or `email: { to, from, smtp }`".into())),
                1 => {}
                _ => self.err(&p(given[1]), format!("a notify entry has both `{}` and `{}`", given[0], given[1]), Some("write one entry per destination".into())),
            }
            let valid = || {
                NotifyEvent::ALL
                    .iter()
                    .map(|e| e.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut on = Vec::new();
            match &r.on {
                None => self.err(&base, "a notify entry has no `on`", Some(format!("say which events to send, e.g. `on: [step-failed, operator-needed]`; the events are {}", valid()))),
                Some(list) if list.is_empty() => self.err(&p("on"), "`on` is an empty list", Some(format!("name at least one of {}", valid()))),
                Some(list) => {
                    for (j, name) in list.iter().enumerate() {
                        let mut q = p("on");
                        q.push(Seg::Index(j));
                        match NotifyEvent::parse(name.trim()) {
                            Some(e) if !on.contains(&e) => on.push(e),
                            Some(_) => self.err(&q, format!("`{name}` is listed twice"), Some("keep one of them".into())),
                            None => {
                                let help = match super::super::diagnostic::suggest(name, NotifyEvent::ALL.iter().map(|e| e.name())) {
                                    Some(s) => format!("did you mean `{s}`? The events are {}", valid()),
                                    None => format!("the events are {}", valid()),
                                };
                                self.err(&q, format!("`{name}` is not a notification event"), Some(help));
                            }
                        }
                    }
                }
            }
            let kind = if let Some(u) = &r.webhook {
                self.url(&p("webhook"), u).map(SinkKind::Webhook)
            } else if let Some(u) = &r.ntfy {
                self.url(&p("ntfy"), u).map(SinkKind::Ntfy)
            } else if let Some(e) = &r.email {
                self.email(&p("email"), e).map(SinkKind::Email)
            } else {
                None
            };
            if self.diags.len() == before {
                if let Some(kind) = kind {
                    out.push(Sink { kind, on });
                }
            }
        }
        out
    }

    pub(super) fn url(&mut self, path: &[Seg], text: &str) -> Option<HttpUrl> {
        match HttpUrl::parse(text) {
            Ok(u) => Some(u),
            Err(e) => {
                self.err(
                    path,
                    format!("`{text}` is not a usable URL: {e}"),
                    Some(
                        "write a full http or https URL, e.g. `https://ntfy.sh/acme-cutover`"
                            .into(),
                    ),
                );
                None
            }
        }
    }

    pub(super) fn address(&mut self, path: &[Seg], text: &str) -> bool {
        if text.trim().parse::<lettre::message::Mailbox>().is_ok() {
            return true;
        }
        self.err(
            path,
            format!("`{text}` is not a mail address"),
            Some("write it like `consultant@example.com` or `Ops <ops@example.com>`".into()),
        );
        false
    }

    pub(super) fn email(&mut self, base: &[Seg], e: &RawEmail) -> Option<EmailSink> {
        let p = |k: &str| {
            let mut v = base.to_vec();
            v.push(key(k));
            v
        };
        let before = self.diags.len();
        let to: Vec<(Vec<Seg>, &String)> = match &e.to {
            RawAddresses::One(a) => vec![(p("to"), a)],
            RawAddresses::List(list) => list
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let mut q = p("to");
                    q.push(Seg::Index(i));
                    (q, a)
                })
                .collect(),
        };
        if to.is_empty() {
            self.err(
                &p("to"),
                "`to` is an empty list",
                Some("name at least one recipient".into()),
            );
        }
        for (q, a) in &to {
            self.address(q, a);
        }
        self.address(&p("from"), &e.from);
        let s = p("smtp");
        let sp = |k: &str| {
            let mut v = s.clone();
            v.push(key(k));
            v
        };
        if e.smtp.host.trim().is_empty() {
            self.err(
                &sp("host"),
                "`smtp.host` is empty",
                Some("name the mail server, e.g. `host: mail.example.com`".into()),
            );
        }
        if e.smtp.port == Some(0) {
            self.err(
                &sp("port"),
                "port 0 is not a port",
                Some("use 587 (starttls), 465 (tls) or 25".into()),
            );
        }
        match (&e.smtp.user, &e.smtp.password) {
            (Some(_), None) => self.err(&sp("user"), "`smtp.user` without a `password`", Some("add `password: { env: VARIABLE }`, or remove `user` if the server needs no login".into())),
            (None, Some(_)) => self.err(&sp("password"), "`smtp.password` without a `user`", Some("add `user: NAME`".into())),
            _ => {}
        }
        let password = self.secret(&sp("password"), &e.smtp.password);
        if self.diags.len() != before {
            return None;
        }
        let tls = e.smtp.tls.unwrap_or_default();
        Some(EmailSink {
            to: to.iter().map(|(_, a)| a.trim().to_string()).collect(),
            from: e.from.trim().to_string(),
            smtp: Smtp {
                host: e.smtp.host.trim().to_string(),
                port: e.smtp.port.unwrap_or(tls.default_port()),
                tls,
                user: e.smtp.user.clone(),
                password,
            },
        })
    }
}
