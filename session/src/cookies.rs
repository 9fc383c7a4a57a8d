//! Reading the session cookie from a request and writing `Set-Cookie`.

use cookie::time::OffsetDateTime;
use cookie::{Cookie, Expiration};
use http::HeaderMap;
use http::header::COOKIE;

use crate::config::{Config, SameSite};

/// Browsers keep cookies of up to 4096 bytes (name, value and attributes);
/// a larger one is never sent, and a larger incoming value is never decoded.
pub(crate) const MAX_COOKIE_BYTES: usize = 4096;

/// The first value of the session cookie among the request's `Cookie`
/// headers.
pub(crate) fn find<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|header| header.to_str().ok())
        .flat_map(|header| header.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key.trim() == name).then(|| value.trim())
        })
}

fn base<'c>(config: &'c Config, value: &'c str) -> cookie::CookieBuilder<'c> {
    let same_site = match config.same_site {
        SameSite::Strict => cookie::SameSite::Strict,
        SameSite::Lax => cookie::SameSite::Lax,
        SameSite::None => cookie::SameSite::None,
    };
    let mut builder = Cookie::build((config.cookie_name.as_str(), value))
        .path(config.cookie_path.as_str())
        .secure(config.secure)
        .http_only(config.http_only)
        .same_site(same_site);
    if let Some(domain) = &config.cookie_domain {
        builder = builder.domain(domain.as_str());
    }
    builder
}

/// The `Set-Cookie` value carrying `value`; with a max age, `Max-Age` and an
/// `Expires` that says the same for older browsers.
pub(crate) fn set_cookie(config: &Config, value: &str, max_age: Option<u64>, now: u64) -> String {
    let mut builder = base(config, value);
    if let Some(max_age) = max_age {
        let seconds = i64::try_from(max_age).unwrap_or(i64::MAX);
        builder = builder
            .max_age(cookie::time::Duration::seconds(seconds))
            .expires(expiration(now.saturating_add(max_age)));
    }
    builder.build().to_string()
}

/// The `Set-Cookie` value that makes the browser drop the session cookie:
/// the same name, path, domain and flags, `Max-Age=0` and an `Expires` in
/// 1970.
pub(crate) fn removal(config: &Config) -> String {
    base(config, "")
        .max_age(cookie::time::Duration::ZERO)
        .expires(expiration(0))
        .build()
        .to_string()
}

/// 9999-12-31T23:59:59Z, the last date a cookie can carry.
const LAST_COOKIE_DATE: i64 = 253_402_300_799;

fn expiration(unix_seconds: u64) -> Expiration {
    let seconds = i64::try_from(unix_seconds)
        .unwrap_or(i64::MAX)
        .min(LAST_COOKIE_DATE);
    Expiration::DateTime(
        OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn finds_the_named_cookie_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; session=abc"));
        headers.append(COOKIE, HeaderValue::from_static("session=later"));
        assert_eq!(find(&headers, "session"), Some("abc"));
        assert_eq!(find(&headers, "sess"), None);
    }

    #[test]
    fn set_cookie_carries_every_attribute() {
        let config = Config {
            cookie_domain: Some("example.com".into()),
            cookie_path: "/app".into(),
            ..Config::default()
        };
        let header = set_cookie(&config, "v", Some(60), 0);
        for part in [
            "session=v",
            "Path=/app",
            "Domain=example.com",
            "Max-Age=60",
            "Expires=Thu, 01 Jan 1970 00:01:00 GMT",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
        ] {
            assert!(header.contains(part), "{part} missing from {header}");
        }
    }

    #[test]
    fn browser_session_cookie_has_no_expiry() {
        let header = set_cookie(&Config::default(), "v", None, 0);
        assert!(!header.contains("Max-Age") && !header.contains("Expires"));
    }

    #[test]
    fn removal_keeps_the_flags() {
        let header = removal(&Config::default());
        for part in [
            "session=;",
            "Max-Age=0",
            "Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
        ] {
            assert!(header.contains(part), "{part} missing from {header}");
        }
    }
}
