//! Authentication headers. Only Basic so far: NTLM needs a maintained NTLM implementation
//! plus the MS-WSMV message encryption around every body, which this build does not have.

use base64::Engine as _;

use crate::transport::Secret;

/// How the transport proves who it is.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// HTTP Basic: user and password in every request, so only over TLS (or where the
    /// playbook explicitly allows unencrypted traffic).
    Basic { user: String, password: Secret },
}

impl Credentials {
    pub fn method(&self) -> &'static str {
        match self {
            Credentials::Basic { .. } => "Basic",
        }
    }

    pub fn user(&self) -> &str {
        match self {
            Credentials::Basic { user, .. } => user,
        }
    }

    /// The `Authorization` header value. It holds the password: never log it.
    pub fn authorization(&self) -> String {
        match self {
            Credentials::Basic { user, password } => {
                let raw = format!("{user}:{}", password.expose());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
                )
            }
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
        assert_eq!(c.authorization(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(!format!("{c:?}").contains("sesame"));
    }
}
