//! The document model written as one self-contained HTML page.

use std::fmt::Write;

use super::document::{visible, Block, Inline, RowMark};

/// Escapes the five characters that matter in HTML text and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn html_inlines(parts: &[Inline]) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            Inline::Text(s) => out.push_str(&html_escape(&visible(s)).replace('\n', "<br>")),
            Inline::Code(s) => {
                let _ = write!(out, "<code>{}</code>", html_escape(&visible(s)));
            }
            Inline::Strong(s) => {
                let _ = write!(out, "<strong>{}</strong>", html_escape(&visible(s)));
            }
        }
    }
    out
}

pub(super) const CSS: &str = "\
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:75em;margin:2em auto;padding:0 1em;color:#222;line-height:1.4}
h1{border-bottom:2px solid #444;padding-bottom:.2em}
h2{border-bottom:1px solid #bbb;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0 1em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0}
table.facts td:first-child{font-weight:600;background:#f7f7f7}
tr.fail td{background:#fde8e8}
tr.rollback td{background:#fff4db}
code{font-family:Consolas,Menlo,monospace;background:#f3f3f3;padding:0 .2em}
pre{font-family:Consolas,Menlo,monospace;background:#f6f6f6;border:1px solid #ddd;padding:.6em;overflow-x:auto;white-space:pre-wrap}
pre .stderr{color:#a00}
.alert{border-left:6px solid #c00;background:#fde8e8;padding:.5em 1em;margin:.6em 0}
.authored{white-space:pre-wrap}
@media print{body{max-width:none}}
@media (max-width:40em){body{margin:1em auto}table{display:block;overflow-x:auto}}
";

pub(super) fn render_html(title: &str, doc: &[Block]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>Cutover report: {}</title>\n<style>\n{CSS}</style>\n</head>\n<body>",
        html_escape(&visible(title))
    );
    for b in doc {
        match b {
            Block::Heading(level, parts) => {
                let _ = writeln!(o, "<h{level}>{}</h{level}>", html_inlines(parts));
            }
            Block::Para(parts) => {
                let _ = writeln!(o, "<p>{}</p>", html_inlines(parts));
            }
            Block::Authored(text) => {
                let _ = writeln!(
                    o,
                    "<p class=\"authored\">{}</p>",
                    html_escape(&visible(text))
                );
            }
            Block::Facts(facts) => {
                let _ = writeln!(o, "<table class=\"facts\">");
                for (k, v) in facts {
                    let _ = writeln!(
                        o,
                        "<tr><td>{}</td><td>{}</td></tr>",
                        html_escape(k),
                        html_inlines(v)
                    );
                }
                let _ = writeln!(o, "</table>");
            }
            Block::Table { head, rows } => {
                let _ = write!(o, "<table>\n<tr>");
                for h in head {
                    let _ = write!(o, "<th>{}</th>", html_escape(h));
                }
                let _ = writeln!(o, "</tr>");
                for r in rows {
                    let class = match r.mark {
                        RowMark::Plain => "",
                        RowMark::Fail => " class=\"fail\"",
                        RowMark::Rollback => " class=\"rollback\"",
                    };
                    let _ = write!(o, "<tr{class}>");
                    for c in &r.cells {
                        let _ = write!(o, "<td>{}</td>", html_inlines(c));
                    }
                    let _ = writeln!(o, "</tr>");
                }
                let _ = writeln!(o, "</table>");
            }
            Block::Alert(parts) => {
                let _ = writeln!(o, "<div class=\"alert\">{}</div>", html_inlines(parts));
            }
            Block::Pre(lines) => {
                let _ = write!(o, "<pre>");
                for (stderr, l) in lines {
                    let l = html_escape(&visible(l));
                    if *stderr {
                        let _ = writeln!(o, "<span class=\"stderr\">{l}</span>");
                    } else {
                        let _ = writeln!(o, "{l}");
                    }
                }
                let _ = writeln!(o, "</pre>");
            }
        }
    }
    let _ = writeln!(o, "</body>\n</html>");
    o
}
