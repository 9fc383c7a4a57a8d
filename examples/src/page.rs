//! The HTML around the examples' pages: one small stylesheet, a title, and
//! escaping for anything a visitor typed, so the examples stay readable in a
//! browser without a template engine.

use std::time::{Duration, SystemTime};

use axum::response::Html;

/// A complete page: `body` is trusted HTML (escape what a visitor sent with
/// [`escape`] before putting it there).
pub fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
         <h1>{title}</h1>\n{body}</main>\n</body>\n</html>\n",
        title = escape(title),
    ))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}\
main{max-width:36rem}form{margin:.75rem 0}input,button{font-size:1rem;padding:.3rem .6rem}\
.flash{background:#e8f5e9;border-left:4px solid #43a047;padding:.5rem .75rem}\
.note{color:#666;font-size:.9rem}";

/// `text` with the five characters that mean something in HTML replaced by
/// their entities, for text and for quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A moment as people read it (`Thu, 03 Dec 2026 07:06:06 GMT`, the HTTP
/// date format) and how long ago it was.
pub fn time_ago(then: SystemTime, now: SystemTime) -> String {
    let ago = now.duration_since(then).unwrap_or(Duration::ZERO).as_secs();
    let ago = match ago {
        0 => "just now".to_owned(),
        1 => "1 second ago".to_owned(),
        2..120 => format!("{ago} seconds ago"),
        120..7200 => format!("{} minutes ago", ago / 60),
        _ => format!("{} hours ago", ago / 3600),
    };
    format!("{} ({ago})", httpdate::fmt_http_date(then))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<b onclick="x">Tom & 'Jerry'</b>"#),
            "&lt;b onclick=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/b&gt;"
        );
    }

    #[test]
    fn times_read_as_dates_and_ages() {
        let then = UNIX_EPOCH + Duration::from_secs(1_796_281_566);
        let html = time_ago(then, then + Duration::from_secs(150));
        assert_eq!(html, "Thu, 03 Dec 2026 07:06:06 GMT (2 minutes ago)");
    }
}
