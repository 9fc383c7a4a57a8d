//! tower-sessions 0.15 with its memory store and private (encrypted)
//! cookies, on the benchmarked routes.

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tower_sessions::cookie::Key;
use tower_sessions::{MemoryStore, Session, SessionManagerLayer};

async fn show(session: Session) -> Result<Json<Value>, StatusCode> {
    let count: Option<i64> = session.get("count").await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(Json(json!({"new": count.is_none(), "identity": null, "empty": count.is_none(), "data": {"count": count}})))
}

async fn increment(session: Session, Query(query): Query<HashMap<String, String>>) -> Result<Json<Value>, StatusCode> {
    let key = query.get("key").ok_or(StatusCode::BAD_REQUEST)?;
    let value = session.get::<i64>(key).await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?.unwrap_or(0) + 1;
    session.insert(key, value).await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(Json(json!({ "value": value })))
}

#[tokio::main]
async fn main() {
    let layer = SessionManagerLayer::new(MemoryStore::default()).with_private(Key::generate());
    let app = Router::new()
        .route("/session", get(show))
        .route("/session/incr", post(increment))
        .route("/untouched", get(|| async { "ok" }))
        .layer(layer);
    session_bench_peers::serve(app).await;
}
