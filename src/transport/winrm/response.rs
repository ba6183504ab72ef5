//! Reading WS-Management responses. Elements are matched by namespace URI and local name,
//! never by prefix: Windows versions and proxies write `s:`, `env:` or `SOAP-ENV:` freely.

use std::fmt;

use base64::Engine as _;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::soap::{NS_ADDRESSING, NS_SHELL, NS_SOAP, NS_WSMAN, NS_WSMANFAULT};
use crate::transport::Stream;

const NS_WMI_ERROR: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/MSFT_WmiError";
const STATE_DONE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done";

/// WSManFault code of `w:TimedOut`: no output within OperationTimeout; poll again.
pub const CODE_TIMED_OUT: u64 = 2_150_858_793;
pub const CODE_INVALID_SELECTORS: u64 = 2_150_858_843;
pub const CODE_QUOTA_LIMIT: u64 = 2_150_859_173;
pub const CODE_MAX_ENVELOPE: u64 = 2_150_859_025;
pub const CODE_FILE_NOT_FOUND: u64 = 2_147_942_402;
pub const CODE_ACCESS_DENIED: u64 = 2_147_942_405;
pub const CODE_LINE_TOO_LONG: u64 = 2_147_942_606;
pub const CODE_INVALID_PARAMETER: u64 = 87;

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the reply is not well-formed XML: {0}")]
    Xml(String),
    #[error("the reply is not a SOAP envelope")]
    NotSoap,
    #[error("the reply carries invalid base64 in a {0} stream")]
    Base64(&'static str),
}

/// One `rsp:Stream` of a ReceiveResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub stream: Stream,
    pub data: Vec<u8>,
    pub end: bool,
    pub command_id: Option<String>,
}

/// A SOAP fault, with what Windows puts in its detail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fault {
    /// `Sender` or `Receiver` (prefix removed).
    pub code: Option<String>,
    /// E.g. `TimedOut`, `InvalidSelectors`, `QuotaLimit` (prefix removed).
    pub subcode: Option<String>,
    pub reason: Option<String>,
    /// The WSManFault `Code` attribute, or the MSFT_WmiError `error_Code`.
    pub wsman_code: Option<u64>,
    /// The plugin that failed, e.g. "Shell cmd plugin".
    pub provider: Option<String>,
    /// The ProviderFault or WSManFault message text.
    pub message: Option<String>,
    /// `w:FaultDetail` URI, e.g. `.../faultDetail/InvalidValue`.
    pub detail: Option<String>,
}

impl Fault {
    /// The Receive simply found no output within OperationTimeout: not an error.
    pub fn is_timed_out(&self) -> bool {
        self.wsman_code == Some(CODE_TIMED_OUT) || self.subcode.as_deref() == Some("TimedOut")
    }

    /// A likely cause and what to do, for the faults people actually meet.
    pub fn hint(&self) -> Option<&'static str> {
        let by_code = match self.wsman_code {
            Some(CODE_INVALID_SELECTORS) => Some("the shell or command is gone on the target (the WinRM service restarted, or the shell idled out); the command may or may not have finished: check the target before running it again"),
            Some(CODE_QUOTA_LIMIT) => Some("the user has too many open WinRM shells: wait for stale ones to time out, restart the WinRM service on the target, or raise MaxShellsPerUser (winrm set winrm/config/winrs @{MaxShellsPerUser=\"50\"})"),
            Some(CODE_MAX_ENVELOPE) => Some("a message exceeded the target's MaxEnvelopeSizekb; raise it (winrm set winrm/config @{MaxEnvelopeSizekb=\"500\"}) or report this"),
            Some(CODE_FILE_NOT_FOUND) => Some("a program named in the command was not found on the target; check its name and path"),
            Some(CODE_ACCESS_DENIED) => Some("the user may not do this remotely; check that it is a member of Administrators (or Remote Management Users)"),
            Some(CODE_LINE_TOO_LONG) => Some("the command line is too long for cmd.exe (8191 characters); move the command into a `script:` file"),
            Some(CODE_INVALID_PARAMETER) => Some("the target rejected a request parameter; this is a bug in runner or an unusual WinRM configuration, report it with this message"),
            _ => None,
        };
        by_code.or(match self.subcode.as_deref() {
            Some("QuotaLimit") => Some(
                "a WinRM quota on the target was exceeded: close stale shells or raise the quota",
            ),
            Some("AccessDenied") => {
                Some("the user may not use WinRM on the target; check its group memberships")
            }
            _ => None,
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WinRM fault {}",
            self.subcode
                .as_deref()
                .or(self.code.as_deref())
                .unwrap_or("(no code)")
        )?;
        if let Some(c) = self.wsman_code {
            write!(f, " (code {c} = 0x{c:08X})")?;
        }
        let text = self.message.as_deref().or(self.reason.as_deref());
        if let Some(t) = text {
            write!(f, ": {}", t.trim())?;
        }
        if let Some(p) = &self.provider {
            write!(f, " [{p}]")?;
        }
        Ok(())
    }
}

/// Everything we read from one response, whatever the operation was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// From the ResourceCreated selector (preferred) or `rsp:ShellId`, exactly as written.
    pub shell_id: Option<String>,
    pub command_id: Option<String>,
    pub chunks: Vec<Chunk>,
    /// Some(true) once CommandState says Done.
    pub done: Option<bool>,
    /// The exit code as the unsigned 32-bit value Windows reports.
    pub exit_code: Option<i64>,
    pub relates_to: Option<String>,
    pub fault: Option<Fault>,
}

/// One open element: its namespace, local name, and the text directly inside it.
struct Open {
    ns: Option<String>,
    local: String,
    text: String,
    /// For `w:Selector`: its Name attribute.
    selector_name: Option<String>,
    stream: Option<(Stream, bool, Option<String>)>,
}

pub fn parse(body: &[u8]) -> Result<Response, ParseError> {
    let mut reader = NsReader::from_reader(body);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Open> = Vec::new();
    let mut out = Response::default();
    let mut saw_envelope = false;
    let mut in_fault = false;
    let mut fault = Fault::default();
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| ParseError::Xml(e.to_string()))?;
        let ns = match ns {
            ResolveResult::Bound(n) => Some(String::from_utf8_lossy(n.as_ref()).into_owned()),
            _ => None,
        };
        match event {
            Event::Start(e) => {
                let open = open_element(&reader, ns, &e)?;
                if is(&open, NS_SOAP, "Envelope") {
                    saw_envelope = true;
                }
                if is(&open, NS_SOAP, "Fault") {
                    in_fault = true;
                }
                start_attributes(&open, &e, &mut out, &mut fault)?;
                stack.push(open);
            }
            Event::Empty(e) => {
                let open = open_element(&reader, ns, &e)?;
                if is(&open, NS_SOAP, "Envelope") {
                    saw_envelope = true;
                }
                start_attributes(&open, &e, &mut out, &mut fault)?;
                let parent = stack.last().map(|p| (p.ns.clone(), p.local.clone()));
                close(open, parent, &mut out, &mut fault, in_fault)?;
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let s = t
                        .xml_content()
                        .map_err(|e| ParseError::Xml(e.to_string()))?;
                    top.text.push_str(&s);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    if let Ok(Some(c)) = r.resolve_char_ref() {
                        top.text.push(c);
                    } else {
                        let name = r.decode().map_err(|e| ParseError::Xml(e.to_string()))?;
                        top.text.push_str(match name.as_ref() {
                            "amp" => "&",
                            "lt" => "<",
                            "gt" => ">",
                            "quot" => "\"",
                            "apos" => "'",
                            _ => "",
                        });
                    }
                }
            }
            Event::End(_) => {
                let Some(open) = stack.pop() else {
                    return Err(ParseError::Xml("unbalanced end tag".into()));
                };
                if is(&open, NS_SOAP, "Fault") {
                    in_fault = false;
                    out.fault = Some(std::mem::take(&mut fault));
                }
                let parent = stack.last().map(|p| (p.ns.clone(), p.local.clone()));
                close(open, parent, &mut out, &mut fault, in_fault)?;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_envelope {
        return Err(ParseError::NotSoap);
    }
    Ok(out)
}

fn is(open: &Open, ns: &str, local: &str) -> bool {
    open.ns.as_deref() == Some(ns) && open.local == local
}

fn open_element(
    reader: &NsReader<&[u8]>,
    ns: Option<String>,
    e: &BytesStart<'_>,
) -> Result<Open, ParseError> {
    let (_, local) = reader.resolve_element(e.name());
    let local = String::from_utf8_lossy(local.as_ref()).into_owned();
    let mut open = Open {
        ns,
        local,
        text: String::new(),
        selector_name: None,
        stream: None,
    };
    if is(&open, NS_WSMAN, "Selector") {
        open.selector_name = attr(e, "Name")?;
    }
    if is(&open, NS_SHELL, "Stream") {
        let stream = match attr(e, "Name")?.as_deref() {
            Some("stderr") => Stream::Stderr,
            _ => Stream::Stdout,
        };
        let end = attr(e, "End")?.is_some_and(|v| v.eq_ignore_ascii_case("true"));
        open.stream = Some((stream, end, attr(e, "CommandId")?));
    }
    Ok(open)
}

/// Attributes that matter before the content: CommandState's State, WSManFault's Code.
fn start_attributes(
    open: &Open,
    e: &BytesStart<'_>,
    out: &mut Response,
    fault: &mut Fault,
) -> Result<(), ParseError> {
    if is(open, NS_SHELL, "CommandState") {
        if let Some(state) = attr(e, "State")? {
            out.done = Some(state == STATE_DONE);
        }
    }
    if is(open, NS_WSMANFAULT, "WSManFault") {
        if let Some(code) = attr(e, "Code")? {
            fault.wsman_code = code.trim().parse().ok();
        }
    }
    if is(open, NS_WSMANFAULT, "ProviderFault") {
        fault.provider = attr(e, "provider")?;
    }
    Ok(())
}

fn close(
    open: Open,
    parent: Option<(Option<String>, String)>,
    out: &mut Response,
    fault: &mut Fault,
    in_fault: bool,
) -> Result<(), ParseError> {
    let text = open.text.trim();
    let parent_is = |ns: &str, local: &str| {
        parent
            .as_ref()
            .is_some_and(|(pns, pl)| pns.as_deref() == Some(ns) && pl == local)
    };
    if is(&open, NS_WSMAN, "Selector") && open.selector_name.as_deref() == Some("ShellId") {
        out.shell_id = Some(text.to_string());
    } else if is(&open, NS_SHELL, "ShellId") {
        if out.shell_id.is_none() {
            out.shell_id = Some(text.to_string());
        }
    } else if is(&open, NS_SHELL, "CommandId") {
        out.command_id = Some(text.to_string());
    } else if is(&open, NS_SHELL, "ExitCode") {
        out.exit_code = parse_exit_code(text);
    } else if is(&open, NS_ADDRESSING, "RelatesTo") {
        out.relates_to = Some(text.to_string());
    } else if let Some((stream, end, command_id)) = open.stream {
        let name = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let data = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| ParseError::Base64(name))?;
        out.chunks.push(Chunk {
            stream,
            data,
            end,
            command_id,
        });
    } else if in_fault {
        if is(&open, NS_SOAP, "Value") && parent_is(NS_SOAP, "Subcode") {
            fault.subcode = Some(local_part(text));
        } else if is(&open, NS_SOAP, "Value") && parent_is(NS_SOAP, "Code") {
            fault.code = Some(local_part(text));
        } else if is(&open, NS_SOAP, "Text") && parent_is(NS_SOAP, "Reason") {
            fault.reason = Some(text.to_string());
        } else if is(&open, NS_WSMANFAULT, "ProviderFault")
            || (is(&open, NS_WSMANFAULT, "Message") && fault.message.is_none() && !text.is_empty())
        {
            fault.message = Some(text.to_string());
        } else if is(&open, NS_WSMAN, "FaultDetail") {
            fault.detail = Some(text.to_string());
        } else if is(&open, NS_WMI_ERROR, "error_Code") && fault.wsman_code.is_none() {
            fault.wsman_code = text.parse().ok();
        } else if is(&open, NS_WMI_ERROR, "Message") && fault.message.is_none() {
            fault.message = Some(text.to_string());
        }
    }
    Ok(())
}

/// `w:TimedOut` -> `TimedOut`. The prefix of a QName in text content is not resolved: the
/// local names of the WS-Management faults are unique enough.
fn local_part(qname: &str) -> String {
    qname.rsplit(':').next().unwrap_or(qname).to_string()
}

fn attr(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, ParseError> {
    for a in e.attributes() {
        let a = a.map_err(|err| ParseError::Xml(err.to_string()))?;
        if a.key.local_name().as_ref() == name.as_bytes() {
            let v = a
                .unescape_value()
                .map_err(|err| ParseError::Xml(err.to_string()))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

/// Windows exit codes are DWORDs. Some hosts print them signed (-1 for 4294967295); both
/// forms become the unsigned value.
pub fn parse_exit_code(text: &str) -> Option<i64> {
    let v: i64 = text.trim().parse().ok()?;
    if (0..=i64::from(u32::MAX)).contains(&v) {
        Some(v)
    } else if (i64::from(i32::MIN)..0).contains(&v) {
        Some(i64::from(v as i32 as u32))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_unsigned_dwords() {
        assert_eq!(parse_exit_code("0"), Some(0));
        assert_eq!(parse_exit_code("3010"), Some(3010));
        assert_eq!(parse_exit_code("4294967295"), Some(4_294_967_295));
        assert_eq!(parse_exit_code("-1"), Some(4_294_967_295));
        assert_eq!(parse_exit_code("-1073741819"), Some(3_221_225_477));
        assert_eq!(parse_exit_code("4294967296"), None);
        assert_eq!(parse_exit_code("x"), None);
    }

    #[test]
    fn prefixes_do_not_matter() {
        let xml = br#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" xmlns:q="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"><SOAP-ENV:Body><q:ReceiveResponse><q:Stream Name='stdout' CommandId='C'>aGk=</q:Stream><q:Stream Name="stderr" CommandId="C" End="true"></q:Stream><q:Stream Name="stdout" End="true" CommandId="C"/><q:CommandState CommandId="C" State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"><q:ExitCode>3010</q:ExitCode></q:CommandState></q:ReceiveResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>"#;
        let r = parse(xml).unwrap();
        assert_eq!(r.chunks.len(), 3);
        assert_eq!(r.chunks[0].data, b"hi");
        assert!(r.chunks[1].end && r.chunks[1].data.is_empty());
        assert_eq!(r.chunks[1].stream, Stream::Stderr);
        assert!(r.chunks[2].end);
        assert_eq!(r.done, Some(true));
        assert_eq!(r.exit_code, Some(3010));
    }

    #[test]
    fn wrong_namespace_is_ignored() {
        let xml = br#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:rsp="urn:other"><s:Body><rsp:CommandId>X</rsp:CommandId></s:Body></s:Envelope>"#;
        assert_eq!(parse(xml).unwrap().command_id, None);
    }

    #[test]
    fn not_soap_and_broken_xml_are_errors() {
        assert!(matches!(parse(b"<html/>"), Err(ParseError::NotSoap)));
        assert!(parse(b"<a><b></a>").is_err());
        assert!(matches!(parse(b""), Err(ParseError::NotSoap)));
    }
}
