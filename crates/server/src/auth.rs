//! Bearer-token auth, shared by the gRPC and HTTP front ends: the same
//! token, the same parsing, the same constant-time comparison.

use std::sync::Arc;

/// The server's token, if auth is on. Cheap to clone.
#[derive(Clone)]
pub struct Auth(pub Option<Arc<str>>);

/// Why a request was refused (the message says what to send instead).
pub const MISSING: &str = "authorization: missing; send `authorization: Bearer TOKEN`";
pub const WRONG: &str = "authorization: wrong bearer token";
pub const NOT_BEARER: &str =
    "authorization: not a bearer token; send `authorization: Bearer TOKEN`";

impl Auth {
    /// Checks an `authorization` header value (None = header absent).
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), &'static str> {
        let Some(expected) = &self.0 else {
            return Ok(());
        };
        let Some(got) = header else {
            return Err(MISSING);
        };
        match bearer_token(got) {
            Some(token) if constant_time_eq(token, expected.as_bytes()) => Ok(()),
            Some(_) => Err(WRONG),
            None => Err(NOT_BEARER),
        }
    }
}

/// The Router and Admin services' interceptor (health and reflection stay
/// open so probes and tooling work without a token).
impl tonic::service::Interceptor for Auth {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let header = req.metadata().get("authorization").map(|v| v.as_bytes());
        match self.check(header) {
            Ok(()) => Ok(req),
            Err(why) => Err(tonic::Status::unauthenticated(why)),
        }
    }
}

/// The token of an `authorization: Bearer TOKEN` header; the scheme is
/// case-insensitive (RFC 7235), spaces around the token are ignored.
fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    let scheme = header.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = header[7..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Compares in time that depends only on the lengths (the length of the
/// expected token is not a secret worth hiding: it is fixed per server).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_exact() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
