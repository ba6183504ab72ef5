//! The token and the Host check in front of every request, and the headers on every answer.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::App;

/// Cookie that carries the token after a `?token=` link.
pub(super) const COOKIE: &str = "runner_token";

/// A fresh random token (128 bits, hex).
pub fn generate_token() -> Result<String, openssl::error::ErrorStack> {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Token comparison whose time does not depend on where the texts differ.
pub(super) fn token_matches(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && openssl::memcmp::eq(given.as_bytes(), expected.as_bytes())
}

pub(super) fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The page's one inline script and style, the stream and the JSON from here; nothing else.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// Lets a request through when no token is required or it carries the token; a `?token=`
/// link sets an HttpOnly cookie and redirects to the same page without the token.
pub(super) async fn auth(
    State(app): State<Arc<App>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let Some(expected) = app.token.as_deref() else {
        // Without a token only loopback listens; a page elsewhere must not reach it through a
        // name it points at 127.0.0.1 (DNS rebinding): only address and localhost names pass.
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        if !host.is_some_and(is_local_host) {
            return security_headers(
                (
                    StatusCode::FORBIDDEN,
                    "without a token this server answers only to localhost and IP addresses\n",
                )
                    .into_response(),
            );
        }
        return security_headers(next.run(req).await);
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v);
    if bearer.is_some_and(|t| token_matches(t, expected))
        || cookie.is_some_and(|t| token_matches(t, expected))
    {
        return security_headers(next.run(req).await);
    }
    if let Some(t) = query.get("token") {
        if token_matches(t, expected) {
            let path = req.uri().path().to_owned();
            let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, path)]).into_response();
            // Behind a TLS proxy the cookie is sent over TLS only.
            let secure = headers
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{COOKIE}={expected}; HttpOnly; SameSite=Strict; Path=/{}",
                if secure { "; Secure" } else { "" }
            )) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            return security_headers(r);
        }
    }
    security_headers(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a token is required: open the link runner serve printed, or send Authorization: Bearer <token>\n",
        )
            .into_response(),
    )
}

/// A Host header naming this machine by address or as localhost.
pub(super) fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(token_matches("abc123", "abc123"));
        assert!(!token_matches("abc124", "abc123"));
        assert!(!token_matches("abc12", "abc123"));
        assert!(!token_matches("", "abc123"));
        let t = generate_token().expect("random bytes");
        assert_eq!(t.len(), 32);
        assert_ne!(t, generate_token().expect("random bytes"));
    }

    #[test]
    fn only_addresses_and_localhost_are_local_host_names() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:1",
            "LOCALHOST",
            "[::1]:80",
            "10.0.0.5:80",
        ] {
            assert!(is_local_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "evil.example",
            "127.0.0.1.nip.io:80",
            "",
        ] {
            assert!(!is_local_host(bad), "{bad}");
        }
    }
}
