//! Several mistakes, each reported once, and nothing from the handler.

use axum::Router;
use axum::routing::post;
use typed_sessions::{MemoryStorage, SessionLayer, TypedSession};

#[derive(typed_sessions::Session)]
#[session(max_age = 0, colour = "blue")]
struct Visit {
    #[session(rename = "")]
    count: u64,
    #[session(default = 3)]
    seen: u32,
}

async fn visit(visit: TypedSession<Visit>) -> String {
    let _ = visit.count();
    format!("{}", visit.seen())
}

fn main() {
    let _app: Router = Router::new()
        .route("/", post(visit))
        .layer(SessionLayer::new(MemoryStorage::new()));
}
