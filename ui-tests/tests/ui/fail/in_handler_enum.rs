//! A type the derive cannot apply to: one error, at the derive's input, and
//! none where a handler extracts it.

use axum::Router;
use axum::routing::post;
use typed_sessions::{MemoryStorage, SessionLayer, TypedSession};

#[derive(typed_sessions::Session)]
enum Visit {
    First,
    Again { count: u64 },
}

async fn visit(visit: TypedSession<Visit>) -> &'static str {
    visit.renew();
    "ok"
}

fn main() {
    let _app: Router = Router::new()
        .route("/", post(visit))
        .layer(SessionLayer::new(MemoryStorage::new()));
}
