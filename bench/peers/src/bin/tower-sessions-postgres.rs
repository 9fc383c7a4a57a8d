//! tower-sessions 0.14 with tower-sessions-sqlx-store 0.15 (the newest
//! pair that works together) on PostgreSQL at `DATABASE_URL`, on the
//! benchmarked routes. The pool is the one typed-sessions'
//! `PostgresStorage::connect` makes: up to 16 connections, none checked
//! again when taken (sqlx checks each when it is given back), so the two
//! apps differ in their sessions only.

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tower_sessions_014::{Session, SessionManagerLayer};
use tower_sessions_sqlx_store::PostgresStore;
use tower_sessions_sqlx_store::sqlx::postgres::PgPoolOptions;

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
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .test_before_acquire(false)
        .connect(&url)
        .await
        .expect("connect to PostgreSQL");
    let store = PostgresStore::new(pool);
    store.migrate().await.expect("create the session table");
    let layer = SessionManagerLayer::new(store).with_secure(false);
    let app = Router::new()
        .route("/session", get(show))
        .route("/session/incr", post(increment))
        .route("/untouched", get(|| async { "ok" }))
        .layer(layer);
    session_bench_peers::serve(app).await;
}
