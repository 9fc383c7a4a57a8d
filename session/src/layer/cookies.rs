//! Reading the session cookie from a request and writing `Set-Cookie`.

use std::time::{Duration, UNIX_EPOCH};

use cookie::Cookie;
use http::HeaderMap;
use http::header::COOKIE;

use super::config::{Config, SameSite};
pub(crate) use crate::record::MAX_COOKIE_BYTES;

/// The value of the session cookie among the request's `Cookie` headers,
/// read leniently, as browsers send them (RFC 6265, section 5.4): every
/// `;`-separated pair is read on its own, so a pair that is malformed or
/// holds bytes outside ASCII or UTF-8 (a sibling app's cookie) is skipped
/// and the others still count; spaces around pairs and names are ignored,
/// and a value wrapped in double quotes is unwrapped.
///
/// With several cookies of the session's name, the first non-empty ASCII
/// value wins: browsers send the cookie with the longest `Path` first, then
/// the oldest. (A `__Host-` cookie name keeps other sites of the domain from
/// setting such a cookie at all.)
pub(crate) fn find<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|header| header.as_bytes().split(|&byte| byte == b';'))
        .filter_map(|pair| std::str::from_utf8(pair).ok())
        .filter_map(|pair| Cookie::parse(pair).ok())
        .filter(|cookie| cookie.name() == name)
        .filter_map(|cookie| cookie.value_raw().map(unquote))
        .find(|value| !value.is_empty() && value.is_ascii())
}

/// The value inside a pair of double quotes, or the value as it is.
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value)
}

/// `name=value; Path=…; Domain=…; Max-Age=…; Expires=…; Secure; HttpOnly; SameSite=…`,
/// written straight into one string: this runs on every saving request.
///
/// The string is allocated at its exact length, so turning it into a
/// `HeaderValue` takes it over without another allocation.
fn write(config: &Config, value: &str, expiry: Option<(u64, u64)>) -> String {
    let same_site = match config.same_site {
        SameSite::Strict => "; SameSite=Strict",
        SameSite::Lax => "; SameSite=Lax",
        SameSite::None => "; SameSite=None",
    };
    let length = config.cookie_name.len()
        + 1
        + value.len()
        + "; Path=".len()
        + config.cookie_path.len()
        + config
            .cookie_domain
            .as_ref()
            .map_or(0, |domain| "; Domain=".len() + domain.len())
        + expiry.map_or(0, |(max_age, _)| {
            "; Max-Age=".len() + decimal_digits(max_age) + "; Expires=".len() + HTTP_DATE_LEN
        })
        + if config.secure { "; Secure".len() } else { 0 }
        + if config.http_only {
            "; HttpOnly".len()
        } else {
            0
        }
        + same_site.len();
    let mut header = String::with_capacity(length);
    header.push_str(&config.cookie_name);
    header.push('=');
    header.push_str(value);
    header.push_str("; Path=");
    header.push_str(&config.cookie_path);
    if let Some(domain) = &config.cookie_domain {
        header.push_str("; Domain=");
        header.push_str(domain);
    }
    if let Some((max_age, expires)) = expiry {
        use std::fmt::Write as _;
        let _ = write!(
            header,
            "; Max-Age={max_age}; Expires={}",
            http_date(expires)
        );
    }
    if config.secure {
        header.push_str("; Secure");
    }
    if config.http_only {
        header.push_str("; HttpOnly");
    }
    header.push_str(same_site);
    debug_assert_eq!(header.len(), length, "the capacity is the exact length");
    header
}

/// The `Set-Cookie` value carrying `value`; with a max age, `Max-Age` and an
/// `Expires` that says the same for older browsers.
pub(crate) fn set_cookie(config: &Config, value: &str, max_age: Option<u64>, now: u64) -> String {
    write(
        config,
        value,
        max_age.map(|max_age| (max_age, now.saturating_add(max_age))),
    )
}

/// The `Set-Cookie` value that makes the browser drop the session cookie:
/// the same name, path, domain and flags, `Max-Age=0` and an `Expires` in
/// 1970.
pub(crate) fn removal(config: &Config) -> String {
    write(config, "", Some((0, 0)))
}

/// 9999-12-31T23:59:59Z, the last date a cookie can carry.
const LAST_COOKIE_DATE: u64 = 253_402_300_799;

/// The length of an IMF-fixdate: dates are clamped to years of four digits.
const HTTP_DATE_LEN: usize = "Thu, 01 Jan 1970 00:00:00 GMT".len();

/// An IMF-fixdate (`Thu, 01 Jan 1970 00:00:00 GMT`), formatted where it is
/// written.
fn http_date(unix_seconds: u64) -> httpdate::HttpDate {
    httpdate::HttpDate::from(UNIX_EPOCH + Duration::from_secs(unix_seconds.min(LAST_COOKIE_DATE)))
}

/// How many digits `n` has in decimal.
fn decimal_digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
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

    proptest::proptest! {
        #[test]
        fn any_header_bytes_are_read_without_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let mut headers = HeaderMap::new();
                headers.append(COOKIE, value);
                if let Some(found) = find(&headers, "session") {
                    proptest::prop_assert!(!found.is_empty() && found.is_ascii());
                }
            }
        }

        #[test]
        fn the_session_cookie_is_found_whatever_pairs_surround_it(
            before in proptest::collection::vec("[^;\\x00-\\x1f\\x7f]{0,12}", 0..4),
            after in proptest::collection::vec("[^;\\x00-\\x1f\\x7f]{0,12}", 0..4),
            value in "[A-Za-z0-9_-]{1,43}",
        ) {
            // Pairs of other names (anything but a pair named `session`).
            let other = |pair: &String| !pair.trim_start().starts_with("session");
            let mut pairs: Vec<String> = before.into_iter().filter(other).collect();
            pairs.push(format!(" session={value} "));
            pairs.extend(after.into_iter().filter(other));
            let mut headers = HeaderMap::new();
            headers.append(COOKIE, HeaderValue::from_str(&pairs.join(";")).unwrap());
            proptest::prop_assert_eq!(find(&headers, "session"), Some(value.as_str()));
        }
    }

    #[test]
    fn set_cookie_carries_every_attribute() {
        let config = Config {
            cookie_name: "__Secure-id".into(),
            cookie_domain: Some("example.com".into()),
            cookie_path: "/app".into(),
            ..Config::default()
        };
        assert!(config.validate().is_ok());
        let header = set_cookie(&config, "v", Some(60), 0);
        assert!(header.starts_with("__Secure-id=v; "), "{header}");
        for part in [
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
    fn far_expiry_is_clamped_to_the_last_writable_date() {
        let header = set_cookie(&Config::default(), "v", Some(u64::MAX), 1);
        assert!(
            header.contains("Expires=Fri, 31 Dec 9999 23:59:59 GMT"),
            "{header}"
        );
    }

    #[test]
    fn headers_are_allocated_at_their_exact_length() {
        let plain = Config::default();
        let full = Config {
            cookie_domain: Some("example.com".into()),
            cookie_path: "/app".into(),
            same_site: SameSite::Strict,
            ..Config::default()
        };
        for config in [&plain, &full] {
            for max_age in [
                None,
                Some(0),
                Some(9),
                Some(10),
                Some(86_400),
                Some(u64::MAX),
            ] {
                let header = set_cookie(config, "value", max_age, 1_700_000_000);
                assert_eq!(header.len(), header.capacity(), "{header}");
            }
            let header = removal(config);
            assert_eq!(header.len(), header.capacity(), "{header}");
        }
    }

    #[test]
    fn removal_keeps_the_flags() {
        let header = removal(&Config::default());
        assert!(header.starts_with("__Host-session=; "), "{header}");
        for part in [
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
