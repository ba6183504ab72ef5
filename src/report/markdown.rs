//! The document model written as Markdown (GitHub-flavoured tables).

use std::fmt::Write;

use super::document::{visible, Block, Inline};

/// Escapes text so Markdown shows it literally: no emphasis, links, HTML or table breaks
/// from journal text. Line breaks become `<br>` so table rows stay on one line.
///
/// Characters that are only special in some positions are escaped only there, so that
/// `C:\data` and `file_not_found` stay readable in the raw file too.
pub(super) fn md_text(s: &str) -> String {
    let chars: Vec<char> = visible(s).chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|p| chars.get(p)).copied();
        let next = chars.get(i + 1).copied();
        let escape = match c {
            '`' | '*' | '[' | ']' | '<' | '>' | '|' | '~' => true,
            // A backslash only escapes punctuation.
            '\\' => next.is_some_and(|n| n.is_ascii_punctuation()),
            // Intraword underscores never make emphasis.
            '_' => {
                !(prev.is_some_and(char::is_alphanumeric)
                    && next.is_some_and(char::is_alphanumeric))
            }
            // Only an entity-like `&name;` or `&#..;` would be decoded.
            '&' => {
                let name = chars[i + 1..]
                    .iter()
                    .take_while(|n| n.is_ascii_alphanumeric() || **n == '#')
                    .count();
                name > 0 && chars.get(i + 1 + name) == Some(&';')
            }
            _ => false,
        };
        match c {
            '\r' => {}
            '\n' => out.push_str("<br>"),
            c => {
                if escape {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
    out
}

/// A code span that survives backticks and pipes in its content.
pub(super) fn md_code(s: &str) -> String {
    let s = visible(s).replace(['\n', '\r'], " ").replace('|', "\\|");
    let longest = longest_run(&s, '`');
    let ticks = "`".repeat(longest + 1);
    if longest > 0 || s.starts_with(' ') || s.ends_with(' ') {
        format!("{ticks} {s} {ticks}")
    } else {
        format!("{ticks}{s}{ticks}")
    }
}

pub(super) fn longest_run(s: &str, ch: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for c in s.chars() {
        cur = if c == ch { cur + 1 } else { 0 };
        best = best.max(cur);
    }
    best
}

pub(super) fn md_inlines(parts: &[Inline]) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            Inline::Text(s) => out.push_str(&md_text(s)),
            Inline::Code(s) => out.push_str(&md_code(s)),
            Inline::Strong(s) if s.is_empty() => {}
            Inline::Strong(s) => {
                let _ = write!(out, "**{}**", md_text(s));
            }
        }
    }
    out
}

pub(super) fn render_markdown(doc: &[Block]) -> String {
    let mut o = String::new();
    for b in doc {
        match b {
            Block::Heading(level, parts) => {
                let _ = writeln!(
                    o,
                    "{} {}\n",
                    "#".repeat(usize::from(*level)),
                    md_inlines(parts)
                );
            }
            Block::Para(parts) => {
                let _ = writeln!(o, "{}\n", md_inlines(parts));
            }
            Block::Authored(text) => {
                let _ = writeln!(o, "{text}\n");
            }
            Block::Facts(facts) => {
                let _ = writeln!(o, "| Item | Value |\n|---|---|");
                for (k, v) in facts {
                    let _ = writeln!(o, "| {} | {} |", md_text(k), md_inlines(v));
                }
                o.push('\n');
            }
            Block::Table { head, rows } => {
                let _ = writeln!(o, "| {} |", head.join(" | "));
                let _ = writeln!(o, "|{}", "---|".repeat(head.len()));
                for r in rows {
                    let cells: Vec<String> = r.cells.iter().map(|c| md_inlines(c)).collect();
                    let _ = writeln!(o, "| {} |", cells.join(" | "));
                }
                o.push('\n');
            }
            Block::Alert(parts) => {
                let _ = writeln!(o, "> {}\n", md_inlines(parts));
            }
            Block::Pre(lines) => {
                let body: Vec<String> = lines.iter().map(|(_, l)| visible(l)).collect();
                let longest = body.iter().map(|l| longest_run(l, '`')).max().unwrap_or(0);
                let fence = "`".repeat(longest.max(2) + 1);
                let _ = writeln!(o, "{fence}text");
                for l in &body {
                    let _ = writeln!(o, "{l}");
                }
                let _ = writeln!(o, "{fence}\n");
            }
        }
    }
    o
}
