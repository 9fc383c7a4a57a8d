//! A mistake in an attribute is reported once, at the attribute, even when
//! the struct is used in a handler: no follow-on errors from the handler,
//! the accessors or axum's `Handler` bound.

use axum::Router;
use axum::routing::post;
use typed_sessions::{MemoryStorage, SessionLayer, TypedSession};

#[derive(typed_sessions::Session)]
#[session(max_age = "30 minutes")]
struct Visit {
    #[session(default)]
    count: u64,
    last: Option<f64>,
}

async fn visit(visit: TypedSession<Visit>) -> String {
    *visit.count_mut() += 1;
    visit.set_last(Some(1.0));
    format!("{}", visit.count())
}

fn main() {
    let _app: Router = Router::new()
        .route("/", post(visit))
        .layer(SessionLayer::new(MemoryStorage::new()));
}
