//! WinRM message encryption over plain HTTP (MS-WSMV 2.2.9.1): after NTLM authentication every
//! body travels sealed, in a two-part `multipart/encrypted` envelope whose second part is the
//! signature length (u32, little-endian), the 16-byte signature and the sealed SOAP message.

use super::ntlm::{NtlmError, Session};

pub const CONTENT_TYPE: &str = "multipart/encrypted;protocol=\"application/HTTP-SPNEGO-session-encrypted\";boundary=\"Encrypted Boundary\"";
const BOUNDARY: &str = "--Encrypted Boundary";
const ORIGINAL_TYPE: &str = "application/soap+xml;charset=UTF-8";

/// Seals `soap` into a request body.
pub fn wrap(session: &mut Session, soap: &[u8]) -> Vec<u8> {
    let mut sealed = soap.to_vec();
    let signature = session.wrap(&mut sealed);
    let mut body = Vec::with_capacity(sealed.len() + 300);
    body.extend_from_slice(
        format!(
            "{BOUNDARY}\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n\tOriginalContent: type={ORIGINAL_TYPE};Length={}\r\n{BOUNDARY}\r\n\tContent-Type: application/octet-stream\r\n",
            soap.len()
        )
        .as_bytes(),
    );
    body.extend_from_slice(&16u32.to_le_bytes());
    body.extend_from_slice(&signature);
    body.extend_from_slice(&sealed);
    body.extend_from_slice(format!("{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Unseals a response body. Tolerates the spacing variants of the boundary lines that
/// different Windows versions write (`--Encrypted Boundary`, `-- Encrypted Boundary`).
pub fn unwrap(session: &mut Session, body: &[u8]) -> Result<Vec<u8>, NtlmError> {
    let marker = b"application/octet-stream";
    let at = find(body, marker).ok_or(NtlmError::BadMessage("no octet-stream part"))?;
    // The binary part starts after the end of that header line.
    let line_end = find(&body[at..], b"\n").ok_or(NtlmError::BadMessage("truncated part"))?;
    let part = &body[at + line_end + 1..];
    let Some(len_bytes) = part.get(..4) else {
        return Err(NtlmError::BadMessage("truncated part"));
    };
    let sig_len =
        u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
    if sig_len != 16 {
        return Err(NtlmError::BadMessage("unexpected signature length"));
    }
    let signature = part
        .get(4..20)
        .ok_or(NtlmError::BadMessage("truncated signature"))?;
    let rest = &part[20..];
    let expected_len = original_length(&body[..at]);
    // The sealed bytes run up to the closing boundary (whose spacing varies).
    let end = match expected_len {
        Some(n) if n <= rest.len() => n,
        _ => last_boundary(rest).ok_or(NtlmError::BadMessage("no closing boundary"))?,
    };
    let mut data = rest[..end].to_vec();
    session.unwrap(signature, &mut data)?;
    Ok(data)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `Length=N` from the OriginalContent header of the first part.
fn original_length(head: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(head);
    let after = text.split("Length=").nth(1)?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn last_boundary(rest: &[u8]) -> Option<usize> {
    let a = rest.windows(20).rposition(|w| w == b"--Encrypted Boundary");
    let b = rest
        .windows(21)
        .rposition(|w| w == b"-- Encrypted Boundary");
    a.into_iter().chain(b).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_a_server_session() {
        let key = [7u8; 16];
        let mut client = Session::client(&key);
        let mut server = Session::server(&key);
        let soap = "<s:Envelope>é --Encrypted Boundary inside</s:Envelope>".as_bytes();
        let body = wrap(&mut client, soap);
        assert!(find(&body, b"<s:Envelope>").is_none());
        assert!(find(&body, b"Length=").is_some());
        // The server unwraps with the same framing rules.
        let plain = unwrap_as_server(&mut server, &body);
        assert_eq!(plain, soap);
        // And a server reply with the spaced boundary variant and no Length comes back.
        let mut reply = b"<s:Envelope>ok</s:Envelope>".to_vec();
        let sig = server.wrap(&mut reply);
        let mut framed = b"-- Encrypted Boundary\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8\r\n-- Encrypted Boundary\r\n\tContent-Type: application/octet-stream\r\n".to_vec();
        framed.extend_from_slice(&16u32.to_le_bytes());
        framed.extend_from_slice(&sig);
        framed.extend_from_slice(&reply);
        framed.extend_from_slice(b"-- Encrypted Boundary--\r\n");
        assert_eq!(
            unwrap(&mut client, &framed).unwrap(),
            b"<s:Envelope>ok</s:Envelope>"
        );
    }

    fn unwrap_as_server(server: &mut Session, body: &[u8]) -> Vec<u8> {
        let at = find(body, b"application/octet-stream").unwrap();
        let nl = find(&body[at..], b"\n").unwrap();
        let part = &body[at + nl + 1..];
        let n = original_length(&body[..at]).unwrap();
        let mut data = part[20..20 + n].to_vec();
        server.unwrap(&part[4..20], &mut data).unwrap();
        data
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let mut client = Session::client(&[1; 16]);
        assert!(unwrap(&mut client, b"plain text").is_err());
        assert!(unwrap(&mut client, b"application/octet-stream\r\n\x10\0").is_err());
        let mut body = b"x: application/octet-stream\r\n".to_vec();
        body.extend_from_slice(&16u32.to_le_bytes());
        body.extend_from_slice(&[0; 16]);
        body.extend_from_slice(b"sealed--Encrypted Boundary--\r\n");
        assert!(matches!(
            unwrap(&mut client, &body),
            Err(NtlmError::BadMessage(_)) | Err(NtlmError::BadSignature)
        ));
    }
}
