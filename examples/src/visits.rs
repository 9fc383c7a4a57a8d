//! aiohttp_session's first example as an axum handler: the page counts your
//! visits and says when you last came. `examples/visits` serves it on an
//! encrypted cookie, `examples/redis` on Redis: the handler does not know the
//! storage.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use typed_sessions::{Session, SessionLayer};

use crate::page::{page, time_ago};

/// The visits page at `/`, its sessions kept by `layer`.
pub fn app(layer: SessionLayer) -> Router {
    Router::new().route("/", get(last_visit)).layer(layer)
}

/// Answers with the number of visits and the time of the previous one, and
/// remembers this one.
pub async fn last_visit(session: Session) -> Html<String> {
    // Seconds since the Unix epoch, as aiohttp_session's example keeps it.
    let last_visit: Option<f64> = session.get("last_visit");
    let visits = session.get::<u64>("visits").unwrap_or(0) + 1;
    let now = SystemTime::now();
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64());
    session
        .insert("last_visit", seconds)
        .expect("a number serializes");
    session
        .insert("visits", visits)
        .expect("a number serializes");

    let last = match last_visit.and_then(|seconds| Duration::try_from_secs_f64(seconds).ok()) {
        Some(since_epoch) => format!(
            "<p>Last visit: <span id=\"last-visit\">{}</span>.</p>\n",
            time_ago(UNIX_EPOCH + since_epoch, now)
        ),
        None => {
            "<p>Last visit: <span id=\"last-visit\">never</span>. Reload the page.</p>\n".to_owned()
        }
    };
    let times = if visits == 1 { "time" } else { "times" };
    page(
        "Visits",
        &format!(
            "<p>You have visited this page <strong id=\"visits\">{visits}</strong> {times}.</p>\n\
             {last}<p class=\"note\">Both are kept in your session; closing the browser ends \
             it unless the app gives the session a max age.</p>\n"
        ),
    )
}
