//! tower-sessions 0.14 with tower-sessions-redis-store 0.16 (the newest
//! pair that works together) on `REDIS_URL`, on the benchmarked routes,
//! with a fred pool of `FRED_POOL_SIZE` connections (default 2).

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tower_sessions_014::{Session, SessionManagerLayer};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};

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
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
    let size = match std::env::var("FRED_POOL_SIZE") {
        Ok(size) => size.parse().expect("FRED_POOL_SIZE: a number of connections"),
        Err(_) => 2,
    };
    let pool = Pool::new(Config::from_url(&url).expect("REDIS_URL"), None, None, None, size).expect("pool");
    let _connection = pool.connect();
    pool.wait_for_connect().await.expect("connect to Redis");
    let layer = SessionManagerLayer::new(RedisStore::new(pool)).with_secure(false);
    let app = Router::new()
        .route("/session", get(show))
        .route("/session/incr", post(increment))
        .route("/untouched", get(|| async { "ok" }))
        .layer(layer);
    session_bench_peers::serve(app).await;
}
