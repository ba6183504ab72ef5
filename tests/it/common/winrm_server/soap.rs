//! SOAP as Windows writes it: requests read into a `Request`, and envelopes, faults and output
//! streams written in one of several namespace prefix styles.

use super::*;

const NS_ADDRESSING: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";

const NS_WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";

const NS_SHELL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";

const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";

/// What the server needs from a request.
#[derive(Debug, Default)]
pub struct Request {
    pub action: String,
    pub message_id: String,
    pub shell_id: Option<String>,
    pub command: Option<String>,
    pub command_id: Option<String>,
    pub signal_code: Option<String>,
    pub send_data: Option<Vec<u8>>,
    pub send_end: bool,
    pub options: BTreeMap<String, String>,
    /// `rsp:Environment` of a Create: name and value of each `rsp:Variable`.
    pub environment: Vec<(String, String)>,
}

/// Namespace, local name and attributes of an element being read.
type OpenElement = (String, String, Vec<(String, String)>);

/// Parses a request by namespace URI (the test server is as strict as the client).
pub fn parse_request(xml: &str) -> Request {
    let mut r = Request::default();
    let mut reader = NsReader::from_str(xml);
    let mut stack: Vec<OpenElement> = Vec::new();
    let mut text = String::new();
    while let Ok((ns, ev)) = reader.read_resolved_event() {
        let ns = match ns {
            ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
            _ => String::new(),
        };
        let (e, empty) = match ev {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::Text(t) => {
                text.push_str(&t.xml_content().unwrap_or_default());
                continue;
            }
            Event::GeneralRef(g) => {
                if let Ok(Some(c)) = g.resolve_char_ref() {
                    text.push(c);
                } else {
                    text.push_str(match g.decode().unwrap_or_default().as_ref() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        _ => "",
                    });
                }
                continue;
            }
            Event::End(_) => {
                let Some((ns, local, attrs)) = stack.pop() else {
                    break;
                };
                end_element(&mut r, &ns, &local, &attrs, &text);
                text.clear();
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
        let attrs: Vec<(String, String)> = e
            .attributes()
            .flatten()
            .map(|a| {
                (
                    String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
                    a.unescape_value()
                        .map(|v| v.into_owned())
                        .unwrap_or_default(),
                )
            })
            .collect();
        let get = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        if ns == NS_SHELL && (local == "DesiredStream" || local == "Signal") {
            r.command_id = get("CommandId");
        }
        if ns == NS_SHELL && local == "Stream" {
            r.command_id = get("CommandId");
            r.send_end = get("End").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            r.send_data = Some(Vec::new());
        }
        text.clear();
        if empty {
            end_element(&mut r, &ns, &local, &attrs, "");
        } else {
            stack.push((ns, local, attrs));
        }
    }
    r
}

fn end_element(r: &mut Request, ns: &str, local: &str, attrs: &[(String, String)], text: &str) {
    let get = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let t = text.trim().to_string();
    match (ns, local) {
        (NS_ADDRESSING, "Action") => r.action = t,
        (NS_ADDRESSING, "MessageID") => r.message_id = t,
        (NS_WSMAN, "Selector") if get("Name").as_deref() == Some("ShellId") => r.shell_id = Some(t),
        (NS_WSMAN, "Option") => {
            r.options.insert(get("Name").unwrap_or_default(), t);
        }
        (NS_SHELL, "Command") => r.command = Some(text.to_string()),
        (NS_SHELL, "Variable") => r
            .environment
            .push((get("Name").unwrap_or_default(), text.to_string())),
        (NS_SHELL, "Code") => r.signal_code = Some(t),
        (NS_SHELL, "Stream") => {
            r.send_data = base64::engine::general_purpose::STANDARD.decode(&t).ok()
        }
        _ => {}
    }
}

/// Namespace prefixes and quoting, varied per response like different Windows versions.
pub(super) struct Style {
    pub(super) s: &'static str,
    pub(super) a: &'static str,
    pub(super) w: &'static str,
    pub(super) rsp: &'static str,
    pub(super) q: char,
    pub(super) nl: &'static str,
}

pub(super) const STYLES: [Style; 3] = [
    Style {
        s: "s",
        a: "a",
        w: "w",
        rsp: "rsp",
        q: '"',
        nl: "",
    },
    Style {
        s: "env",
        a: "wsa",
        w: "wsman",
        rsp: "shell",
        q: '\'',
        nl: "\n  ",
    },
    Style {
        s: "SOAP-ENV",
        a: "addr",
        w: "w",
        rsp: "r",
        q: '"',
        nl: "\r\n",
    },
];

pub(super) fn envelope(st: &Style, action: &str, relates_to: &str, body: &str) -> String {
    let q = st.q;
    let (s, a, w, rsp, nl) = (st.s, st.a, st.w, st.rsp, st.nl);
    format!(
        "<{s}:Envelope xml:lang={q}en-US{q} xmlns:{s}={q}{NS_SOAP}{q} xmlns:{a}={q}{NS_ADDRESSING}{q} xmlns:x={q}http://schemas.xmlsoap.org/ws/2004/09/transfer{q} xmlns:{w}={q}{NS_WSMAN}{q} xmlns:{rsp}={q}{NS_SHELL}{q} xmlns:p={q}http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd{q}>{nl}<{s}:Header>{nl}<{a}:Action>{action}</{a}:Action>{nl}<{a}:MessageID>uuid:{}</{a}:MessageID>{nl}<{a}:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</{a}:To>{nl}<{a}:RelatesTo>{relates_to}</{a}:RelatesTo>{nl}</{s}:Header>{nl}<{s}:Body>{body}</{s}:Body>{nl}</{s}:Envelope>",
        new_id()
    )
}

pub(super) fn fault(
    st: &Style,
    relates_to: &str,
    code: &str,
    subcode: &str,
    reason: &str,
    wsman_code: u64,
) -> String {
    let (s, w, q) = (st.s, st.w, st.q);
    let body = format!(
        "<{s}:Fault><{s}:Code><{s}:Value>{s}:{code}</{s}:Value><{s}:Subcode><{s}:Value>{w}:{subcode}</{s}:Value></{s}:Subcode></{s}:Code><{s}:Reason><{s}:Text xml:lang={q}en-US{q}>{reason}</{s}:Text></{s}:Reason><{s}:Detail><f:WSManFault xmlns:f={q}http://schemas.microsoft.com/wbem/wsman/1/wsmanfault{q} Code={q}{wsman_code}{q} Machine={q}test{q}><f:Message>{reason}</f:Message></f:WSManFault></{s}:Detail></{s}:Fault>"
    );
    envelope(
        st,
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
        relates_to,
        &body,
    )
}

/// The QuotaLimit fault as WinRM 2.0 sends it: an MSFT_WmiError detail, no WSManFault.
pub(super) fn quota_fault(st: &Style, relates_to: &str) -> String {
    let (s, w, q) = (st.s, st.w, st.q);
    let body = format!(
        "<{s}:Fault><{s}:Code><{s}:Value>{s}:Sender</{s}:Value><{s}:Subcode><{s}:Value>{w}:QuotaLimit</{s}:Value></{s}:Subcode></{s}:Code><{s}:Reason><{s}:Text xml:lang={q}en-US{q}>The WS-Management service cannot process the request. The maximum number of concurrent shells for this user has been exceeded. </{s}:Text></{s}:Reason><{s}:Detail><p:MSFT_WmiError xmlns:p={q}http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/MSFT_WmiError{q}><p:Message>This user is allowed a maximum number of 30 concurrent shells, which has been exceeded.</p:Message><p:error_Code>2150859173</p:error_Code></p:MSFT_WmiError></{s}:Detail></{s}:Fault>"
    );
    envelope(
        st,
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
        relates_to,
        &body,
    )
}

pub(super) fn stream_xml(
    st: &Style,
    name: &str,
    cmd: &str,
    data: &[u8],
    end: bool,
    shape: u64,
) -> String {
    let (rsp, q) = (st.rsp, st.q);
    if data.is_empty() {
        // Windows writes empty final streams both ways.
        if shape % 2 == 0 {
            format!("<{rsp}:Stream Name={q}{name}{q} CommandId={q}{cmd}{q} End={q}true{q}></{rsp}:Stream>")
        } else {
            format!("<{rsp}:Stream End={q}true{q} CommandId={q}{cmd}{q} Name={q}{name}{q}/>")
        }
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        let end = if end {
            format!(" End={q}true{q}")
        } else {
            String::new()
        };
        format!("<{rsp}:Stream Name={q}{name}{q} CommandId={q}{cmd}{q}{end}>{b64}</{rsp}:Stream>")
    }
}
