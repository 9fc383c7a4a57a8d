//! The ceiling: the benchmarked routes with no session layer, answering
//! the same shapes as the conformance app.

use std::collections::HashMap;

use axum::extract::Query;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

async fn show() -> Json<Value> {
    Json(json!({"new": false, "identity": null, "created": 0, "max_age": null, "empty": false, "data": {"count": 1}}))
}

async fn increment(Query(query): Query<HashMap<String, String>>) -> Json<Value> {
    let _key = query.get("key");
    Json(json!({ "value": 1 }))
}

#[tokio::main]
async fn main() {
    let app = Router::new()
        .route("/session", get(show))
        .route("/session/incr", post(increment))
        .route("/untouched", get(|| async { "ok" }));
    session_bench_peers::serve(app).await;
}
