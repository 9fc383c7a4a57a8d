//! tower-sessions 0.14 with tower-sessions-sqlx-store 0.15 (the newest
//! pair that works together) on the SQLite file at `DATABASE_URL`
//! (`sqlite://PATH`, created if missing), on the benchmarked routes. The
//! database and pool are opened as typed-sessions' `SqliteStorage::connect`
//! opens them (write-ahead log, up to 16 connections, none checked again
//! when taken), so the two apps differ in their sessions only; but a
//! connection waits for another's write lock for sqlx's default five
//! seconds, not typed-sessions' one, which lines its writers up in the
//! process instead: a shorter wait would only turn slow writes into errors.

use std::str::FromStr;

use tower_sessions_014::SessionManagerLayer;
use tower_sessions_sqlx_store::SqliteStore;
use tower_sessions_sqlx_store::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

#[tokio::main]
async fn main() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let options = SqliteConnectOptions::from_str(&url)
        .expect("DATABASE_URL")
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new()
        .max_connections(16)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .expect("open the SQLite database");
    let store = SqliteStore::new(pool);
    store.migrate().await.expect("create the session table");
    let layer = SessionManagerLayer::new(store).with_secure(false);
    let app = session_bench_peers::session_routes!(tower_sessions_014::Session).layer(layer);
    session_bench_peers::serve(app).await;
}
