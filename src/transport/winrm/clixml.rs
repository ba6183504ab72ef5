//! PowerShell started without a console writes its error, warning and progress streams to
//! stderr as CLIXML (`#< CLIXML` then `<Objs>...`). Nobody reviewing a step log can read that,
//! so stderr that starts this way is held back and turned into the text PowerShell would have
//! printed on a console.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

const NS_PS: &str = "http://schemas.microsoft.com/powershell/2004/04";
const MARKER: &[u8] = b"#< CLIXML";

/// Decides, from its first bytes, whether a stderr stream is CLIXML; passes it on otherwise.
#[derive(Debug, Default)]
pub struct StderrFilter {
    held: Vec<u8>,
    state: State,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Undecided,
    Clixml,
    Plain,
}

impl StderrFilter {
    /// Bytes to show now.
    pub fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        match self.state {
            State::Plain => data.to_vec(),
            State::Clixml => {
                self.held.extend_from_slice(data);
                Vec::new()
            }
            State::Undecided => {
                self.held.extend_from_slice(data);
                let n = self.held.len().min(MARKER.len());
                if self.held[..n] != MARKER[..n] {
                    self.state = State::Plain;
                    std::mem::take(&mut self.held)
                } else {
                    if n == MARKER.len() {
                        self.state = State::Clixml;
                    }
                    Vec::new()
                }
            }
        }
    }

    /// The stream ended: the decoded text, or whatever was held back as it was.
    pub fn finish(&mut self) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        if self.state != State::Clixml {
            return held;
        }
        match decode(&held) {
            Some(text) => text.into_bytes(),
            None => held,
        }
    }
}

/// The text of the `<S>` records (errors, warnings, verbose and debug messages) of a CLIXML
/// document; progress records are dropped. None if it is not CLIXML after all.
pub fn decode(raw: &[u8]) -> Option<String> {
    let rest = raw.strip_prefix(MARKER)?;
    let mut reader = NsReader::from_reader(rest);
    let mut out = String::new();
    // Inside a top-level <S>: its S attribute.
    let mut record: Option<String> = None;
    let mut text = String::new();
    let mut depth = 0usize;
    let mut saw_objs = false;
    loop {
        let (ns, ev) = reader.read_resolved_event().ok()?;
        let in_ps = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == NS_PS.as_bytes());
        match ev {
            Event::Start(e) => {
                depth += 1;
                if in_ps && depth == 1 && e.local_name().as_ref() == b"Objs" {
                    saw_objs = true;
                }
                if in_ps && depth == 2 && e.local_name().as_ref() == b"S" {
                    let kind = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == b"S")
                        .and_then(|a| a.unescape_value().ok())
                        .map(|v| v.into_owned())
                        .unwrap_or_default();
                    record = Some(kind);
                    text.clear();
                }
            }
            Event::Text(t) if record.is_some() => {
                text.push_str(&t.xml_content().ok()?);
            }
            Event::GeneralRef(r) if record.is_some() => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else {
                    text.push_str(match r.decode().ok()?.as_ref() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        _ => "",
                    });
                }
            }
            Event::End(_) => {
                if depth == 2 {
                    if let Some(kind) = record.take() {
                        let prefix = match kind.as_str() {
                            "Warning" => "WARNING: ",
                            "Verbose" => "VERBOSE: ",
                            "Debug" => "DEBUG: ",
                            _ => "",
                        };
                        out.push_str(prefix);
                        out.push_str(&unescape(&text));
                    }
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    (saw_objs && depth == 0).then_some(out)
}

/// PowerShell's `_xHHHH_` escapes (UTF-16 code units) back to characters.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut units: Vec<u16> = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'_' && i + 7 <= b.len() && b[i + 1] == b'x' && b[i + 6] == b'_' {
            if let Some(u) = std::str::from_utf8(&b[i + 2..i + 6])
                .ok()
                .and_then(|h| u16::from_str_radix(h, 16).ok())
            {
                units.push(u);
                i += 7;
                continue;
            }
        }
        // Copy one character as UTF-16.
        let ch_len = s[i..].chars().next().map(char::len_utf8).unwrap_or(1);
        units.extend(s[i..i + ch_len].encode_utf16());
        i += ch_len;
    }
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_become_text() {
        let raw = b"#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\"><Obj S=\"progress\" RefId=\"0\"><TN RefId=\"0\"><T>System.Management.Automation.PSCustomObject</T></TN><MS><I64 N=\"SourceId\">1</I64></MS></Obj><S S=\"Error\">boom &amp; bust_x000D__x000A_</S><S S=\"Warning\">careful_x000D__x000A_</S></Objs>";
        assert_eq!(
            decode(raw).as_deref(),
            Some("boom & bust\r\nWARNING: careful\r\n")
        );
    }

    #[test]
    fn escapes_cover_surrogates_and_leave_other_underscores() {
        assert_eq!(unescape("a_x0009_b"), "a\tb");
        assert_eq!(unescape("_xD83D__xDE00_"), "\u{1f600}");
        assert_eq!(unescape("my_file_x_"), "my_file_x_");
        assert_eq!(unescape("ü_x000A_"), "ü\n");
    }

    #[test]
    fn filter_holds_clixml_and_passes_plain_text() {
        let mut f = StderrFilter::default();
        assert_eq!(f.feed(b"#< CLI"), b"");
        assert_eq!(f.feed(b"XML\r\n<Objs xmlns=\"http://schemas.microsoft.com/powershell/2004/04\"><S S=\"Error\">x_x000A_</S>"), b"");
        assert_eq!(f.feed(b"</Objs>"), b"");
        assert_eq!(f.finish(), b"x\n");

        let mut f = StderrFilter::default();
        assert_eq!(f.feed(b"#"), b"");
        assert_eq!(f.feed(b" plain error\n"), b"# plain error\n");
        assert_eq!(f.feed(b"more"), b"more");
        assert_eq!(f.finish(), b"");
    }

    #[test]
    fn broken_clixml_is_shown_as_it_came() {
        let mut f = StderrFilter::default();
        assert_eq!(f.feed(b"#< CLIXML\r\n<Objs><S>"), b"");
        let shown = f.finish();
        assert_eq!(shown, b"#< CLIXML\r\n<Objs><S>");
    }
}
