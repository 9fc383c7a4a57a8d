//! tower-sessions 0.14 with tower-sessions-sqlx-store 0.15 (the newest
//! pair that works together) on PostgreSQL at `DATABASE_URL`, on the
//! benchmarked routes. The pool is the one typed-sessions'
//! `PostgresStorage::connect` makes: up to 16 connections, none checked
//! again when taken (sqlx checks each when it is given back), so the two
//! apps differ in their sessions only.

use tower_sessions_014::SessionManagerLayer;
use tower_sessions_sqlx_store::PostgresStore;
use tower_sessions_sqlx_store::sqlx::postgres::PgPoolOptions;

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
    let app = session_bench_peers::session_routes!(tower_sessions_014::Session).layer(layer);
    session_bench_peers::serve(app).await;
}
