//! Who the transport logs in as, and how. Basic is a header on every request; NTLM is a
//! handshake per connection (see `ntlm` and `encryption`).

use base64::Engine as _;

use crate::transport::Secret;

/// How the transport proves who it is.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// HTTP Basic: user and password in every request, so only over TLS (or where the
    /// playbook explicitly allows unencrypted traffic).
    Basic { user: String, password: Secret },
    /// NTLMv2 (`DOMAIN\user` or a local user), with message encryption over plain HTTP.
    Ntlm { user: String, password: Secret },
}

impl Credentials {
    pub fn method(&self) -> &'static str {
        match self {
            Credentials::Basic { .. } => "Basic",
            Credentials::Ntlm { .. } => "NTLM",
        }
    }

    pub fn user(&self) -> &str {
        match self {
            Credentials::Basic { user, .. } | Credentials::Ntlm { user, .. } => user,
        }
    }

    /// The `Authorization` header for every request (Basic only). It holds the password:
    /// never log it.
    pub fn authorization(&self) -> Option<String> {
        match self {
            Credentials::Basic { user, password } => {
                let raw = format!("{user}:{}", password.expose());
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
                ))
            }
            Credentials::Ntlm { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header() {
        // RFC 7617 section 2's example: Aladdin / open sesame.
        let c = Credentials::Basic {
            user: "Aladdin".into(),
            password: Secret::new("open sesame"),
        };
        assert_eq!(
            c.authorization().as_deref(),
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
        assert!(!format!("{c:?}").contains("sesame"));
    }
}
