//! Two fields whose accessors clash: one error, at the second field, and
//! none from a handler that uses the struct.

use axum::Router;
use axum::routing::post;
use typed_sessions::{MemoryStorage, SessionLayer, TypedSession};

#[derive(typed_sessions::Session)]
struct Flags {
    #[session(default)]
    dark: bool,
    #[session(default)]
    set_dark: bool,
}

async fn toggle(flags: TypedSession<Flags>) -> &'static str {
    flags.set_dark(!flags.dark());
    "ok"
}

fn main() {
    let _app: Router = Router::new()
        .route("/", post(toggle))
        .layer(SessionLayer::new(MemoryStorage::new()));
}
