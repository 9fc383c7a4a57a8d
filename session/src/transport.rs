//! How a session's id travels: in a cookie (browsers), in a request header
//! (API and mobile clients), or either.

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName};

/// How the session's id travels between client and server; see
/// [`SessionLayerBuilder::with_transport`](crate::SessionLayerBuilder::with_transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// A cookie, for browsers. The default.
    #[default]
    Cookie,
    /// A request header (`Authorization: Bearer <token>` by default) and a
    /// response header (`Session-Token`), for API and mobile clients: no
    /// cookie is read or set. Server-side storages only.
    Header,
    /// Both: a request is answered the way its session came (a header
    /// first, if it carries one), and a new session is offered both ways.
    /// Server-side storages only.
    Both,
}

impl Transport {
    pub(crate) fn reads_cookies(self) -> bool {
        self != Self::Header
    }

    pub(crate) fn reads_headers(self) -> bool {
        self != Self::Cookie
    }
}

/// How the request's session id came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Cookie,
    Header,
}

/// The token of the request header `name`: with `Authorization`, the
/// credentials of the `Bearer` scheme (RFC 6750: the scheme is read without
/// regard to case); with another header, its whole value. Surrounding
/// spaces are ignored; an empty token is none. A request with the header
/// more than once carries none: an intermediary that reads another of them
/// than we would must never disagree with us about who is signed in.
pub(crate) fn token<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?.trim();
    let token = if name == AUTHORIZATION {
        let (scheme, credentials) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        credentials.trim()
    } else {
        value
    };
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(name: &HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn bearer_tokens_are_read_from_authorization() {
        let read =
            |value| token(&headers(&AUTHORIZATION, value), &AUTHORIZATION).map(str::to_owned);
        assert_eq!(read("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(read("bearer   abc ").as_deref(), Some("abc"));
        assert_eq!(read("Basic abc"), None, "another scheme");
        assert_eq!(read("Bearer"), None);
        assert_eq!(read("Bearer  "), None);
        assert_eq!(read("abc"), None);
    }

    #[test]
    fn another_header_gives_its_whole_value() {
        let name = HeaderName::from_static("session-token-admin");
        assert_eq!(token(&headers(&name, " abc "), &name), Some("abc"));
        assert_eq!(token(&headers(&name, ""), &name), None);
        assert_eq!(token(&HeaderMap::new(), &name), None);
    }
}
