//! Building the WS-Management requests of the WinRS cmd shell (MS-WSMV 3.1.4).
//!
//! The headers are the ones real Windows hosts accept from the established clients; every
//! value we insert is XML-escaped, so commands may contain `&`, `<` and raw UTF-8.

use base64::Engine as _;

use crate::secret::Secret;

pub const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const NS_ADDRESSING: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
pub const NS_WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
pub const NS_WSMV: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd";
pub const NS_SHELL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
pub const NS_WSMANFAULT: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault";

pub const RESOURCE_CMD: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd";
const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";

pub const ACTION_CREATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create";
pub const ACTION_DELETE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete";
pub const ACTION_COMMAND: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command";
pub const ACTION_SEND: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Send";
pub const ACTION_RECEIVE: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive";
pub const ACTION_SIGNAL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal";

pub const SIGNAL_TERMINATE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate";

/// 150 KiB: the default of old hosts (Windows 2003 / WinRM 1.1). Larger envelopes are refused
/// there, so the Send chunk size is derived from this.
pub const MAX_ENVELOPE_SIZE: usize = 153_600;

/// What every request of one transport shares.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `http://host:5985/wsman`.
    pub to: String,
    /// Seconds the server may hold a Receive open before answering with a TimedOut fault.
    pub operation_timeout_secs: u64,
}

/// Escape text for element content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Carriage returns would be normalised away by the XML parser otherwise.
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// A random `uuid:` message id (version 4 layout).
pub fn message_id() -> String {
    let hex = format!(
        "{}{}",
        super::super::random_token(),
        super::super::random_token()
    );
    let h = hex.as_bytes();
    let s = |a: usize, b: usize| String::from_utf8_lossy(&h[a..b]).to_uppercase();
    format!(
        "uuid:{}-{}-4{}-A{}-{}",
        s(0, 8),
        s(8, 12),
        s(13, 16),
        s(17, 20),
        s(20, 32)
    )
}

struct Header<'a> {
    action: &'a str,
    shell_id: Option<&'a str>,
    options: &'a [(&'a str, &'a str)],
}

fn envelope(ep: &Endpoint, message_id: &str, h: &Header<'_>, body: &str) -> String {
    let mut x = String::with_capacity(1500 + body.len());
    x.push_str(&format!(
        "<s:Envelope xmlns:s=\"{NS_SOAP}\" xmlns:wsa=\"{NS_ADDRESSING}\" xmlns:wsman=\"{NS_WSMAN}\" xmlns:wsmv=\"{NS_WSMV}\" xmlns:rsp=\"{NS_SHELL}\"><s:Header>"
    ));
    x.push_str(&format!(
        "<wsa:Action s:mustUnderstand=\"true\">{}</wsa:Action>",
        h.action
    ));
    x.push_str("<wsmv:DataLocale s:mustUnderstand=\"false\" xml:lang=\"en-US\"/>");
    x.push_str("<wsman:Locale s:mustUnderstand=\"false\" xml:lang=\"en-US\"/>");
    x.push_str(&format!(
        "<wsman:MaxEnvelopeSize s:mustUnderstand=\"true\">{MAX_ENVELOPE_SIZE}</wsman:MaxEnvelopeSize>"
    ));
    x.push_str(&format!("<wsa:MessageID>{message_id}</wsa:MessageID>"));
    x.push_str(&format!(
        "<wsman:OperationTimeout>PT{}S</wsman:OperationTimeout>",
        ep.operation_timeout_secs
    ));
    x.push_str(&format!(
        "<wsa:ReplyTo><wsa:Address s:mustUnderstand=\"true\">{ANONYMOUS}</wsa:Address></wsa:ReplyTo>"
    ));
    x.push_str(&format!(
        "<wsman:ResourceURI s:mustUnderstand=\"true\">{RESOURCE_CMD}</wsman:ResourceURI>"
    ));
    x.push_str(&format!("<wsa:To>{}</wsa:To>", xml_escape(&ep.to)));
    if !h.options.is_empty() {
        x.push_str("<wsman:OptionSet s:mustUnderstand=\"true\">");
        for (name, value) in h.options {
            x.push_str(&format!(
                "<wsman:Option Name=\"{}\">{}</wsman:Option>",
                xml_escape(name),
                xml_escape(value)
            ));
        }
        x.push_str("</wsman:OptionSet>");
    }
    if let Some(id) = h.shell_id {
        // Echoed exactly as the server wrote it, `uuid:` prefix included.
        x.push_str(&format!(
            "<wsman:SelectorSet><wsman:Selector Name=\"ShellId\">{}</wsman:Selector></wsman:SelectorSet>",
            xml_escape(id)
        ));
    }
    x.push_str("</s:Header><s:Body>");
    x.push_str(body);
    x.push_str("</s:Body></s:Envelope>");
    x
}

/// Create a cmd shell: UTF-8 code page (so output decodes the same everywhere) and no user
/// profile (faster, and no profile scripts that print or prompt).
///
/// `env` becomes the shell's environment (`rsp:Environment`), which every command started in
/// it inherits: how a step's `env` reaches a Windows command without a command line.
pub fn create_shell(ep: &Endpoint, message_id: &str, env: &[(String, Secret)]) -> String {
    let mut environment = String::new();
    if !env.is_empty() {
        environment.push_str("<rsp:Environment>");
        for (name, value) in env {
            environment.push_str(&format!(
                "<rsp:Variable Name=\"{}\">{}</rsp:Variable>",
                xml_escape(name),
                xml_escape(value.expose())
            ));
        }
        environment.push_str("</rsp:Environment>");
    }
    envelope(
        ep,
        message_id,
        &Header {
            action: ACTION_CREATE,
            shell_id: None,
            options: &[("WINRS_NOPROFILE", "TRUE"), ("WINRS_CODEPAGE", "65001")],
        },
        &format!("<rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams>{environment}</rsp:Shell>"),
    )
}

/// Start `command_line` in the shell (run by `cmd.exe /c`, since WINRS_SKIP_CMD_SHELL is false).
/// `piped_stdin`: we will Send data to stdin, so it must be a pipe, not a console (with a
/// console, programs wait for keyboard-style input and PowerShell's `$input` stays empty).
pub fn command(
    ep: &Endpoint,
    message_id: &str,
    shell_id: &str,
    command_line: &str,
    piped_stdin: bool,
) -> String {
    envelope(
        ep,
        message_id,
        &Header {
            action: ACTION_COMMAND,
            shell_id: Some(shell_id),
            options: &[
                (
                    "WINRS_CONSOLEMODE_STDIN",
                    if piped_stdin { "FALSE" } else { "TRUE" },
                ),
                ("WINRS_SKIP_CMD_SHELL", "FALSE"),
            ],
        },
        &format!(
            "<rsp:CommandLine><rsp:Command>{}</rsp:Command></rsp:CommandLine>",
            xml_escape(command_line)
        ),
    )
}

/// Feed `data` to the command's stdin; `end` closes it.
pub fn send(
    ep: &Endpoint,
    message_id: &str,
    shell_id: &str,
    command_id: &str,
    data: &[u8],
    end: bool,
) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    envelope(
        ep,
        message_id,
        &Header {
            action: ACTION_SEND,
            shell_id: Some(shell_id),
            options: &[],
        },
        &format!(
            "<rsp:Send><rsp:Stream Name=\"stdin\" CommandId=\"{}\" End=\"{}\">{b64}</rsp:Stream></rsp:Send>",
            xml_escape(command_id),
            if end { "true" } else { "false" }
        ),
    )
}

pub fn receive(ep: &Endpoint, message_id: &str, shell_id: &str, command_id: &str) -> String {
    envelope(
        ep,
        message_id,
        &Header {
            action: ACTION_RECEIVE,
            shell_id: Some(shell_id),
            options: &[("WSMAN_CMDSHELL_OPTION_KEEPALIVE", "TRUE")],
        },
        &format!(
            "<rsp:Receive><rsp:DesiredStream CommandId=\"{}\">stdout stderr</rsp:DesiredStream></rsp:Receive>",
            xml_escape(command_id)
        ),
    )
}

pub fn signal(
    ep: &Endpoint,
    message_id: &str,
    shell_id: &str,
    command_id: &str,
    code: &str,
) -> String {
    envelope(
        ep,
        message_id,
        &Header {
            action: ACTION_SIGNAL,
            shell_id: Some(shell_id),
            options: &[],
        },
        &format!(
            "<rsp:Signal CommandId=\"{}\"><rsp:Code>{}</rsp:Code></rsp:Signal>",
            xml_escape(command_id),
            xml_escape(code)
        ),
    )
}

pub fn delete_shell(ep: &Endpoint, message_id: &str, shell_id: &str) -> String {
    envelope(
        ep,
        message_id,
        &Header {
            action: ACTION_DELETE,
            shell_id: Some(shell_id),
            options: &[],
        },
        "",
    )
}

/// The largest stdin chunk whose Send envelope stays well under [`MAX_ENVELOPE_SIZE`]
/// (base64 grows data by 4/3; the headers take about 1.5 KB).
pub const SEND_CHUNK: usize = (MAX_ENVELOPE_SIZE - 8 * 1024) / 4 * 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            xml_escape("a&&b > c <\"'\r"),
            "a&amp;&amp;b &gt; c &lt;&quot;&apos;&#13;"
        );
        assert_eq!(xml_escape("こんにちは"), "こんにちは");
    }

    #[test]
    fn message_ids_look_like_uuids_and_differ() {
        let a = message_id();
        let b = message_id();
        assert_ne!(a, b);
        let hex = a.strip_prefix("uuid:").unwrap_or_default();
        let parts: Vec<usize> = hex.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12], "{a}");
    }

    #[test]
    fn send_chunk_fits_the_envelope() {
        let ep = Endpoint {
            to: "http://h:5985/wsman".into(),
            operation_timeout_secs: 20,
        };
        let data = vec![0u8; SEND_CHUNK];
        let x = send(&ep, &message_id(), "uuid:S", "C", &data, true);
        assert!(x.len() < MAX_ENVELOPE_SIZE, "{}", x.len());
    }
}
