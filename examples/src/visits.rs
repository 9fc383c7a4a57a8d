//! aiohttp_session's first example as an axum handler: the page says when
//! you last visited it. `examples/visits` serves it on an encrypted cookie,
//! `examples/redis` on Redis: the handler does not know the storage.

use std::time::{SystemTime, UNIX_EPOCH};

use typed_sessions::Session;

/// Answers with the time of the previous visit and remembers this one.
pub async fn last_visit(session: Session) -> String {
    let last_visit: Option<f64> = session.get("last_visit");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64());
    session
        .insert("last_visit", now)
        .expect("a number serializes");
    match last_visit {
        Some(seconds) => format!("Last visited: {seconds:.3} (seconds since the Unix epoch)"),
        None => "Last visited: never. Reload the page.".to_owned(),
    }
}
