//! tower-sessions 0.14 with tower-sessions-sqlx-store 0.15 (the newest
//! pair that works together) on MySQL or MariaDB at `DATABASE_URL`
//! (`mysql://USER@HOST:PORT/DB`), on the benchmarked routes. The pool is
//! the one typed-sessions' `MySqlStorage::connect` makes: up to 16
//! connections, none checked again when taken (sqlx checks each when it is
//! given back), so the two apps differ in their sessions only.
//!
//! The store's table goes in the URL's database. `MySqlStore` puts it in a
//! "schema" of its own, `tower_sessions` unless told otherwise, and a MySQL
//! schema is a database: left at its default, every start would share one
//! database outside the fresh one `scripts/bench-load` made for it, with
//! the sessions of the runs before it, where the PostgreSQL peer gets an
//! empty schema in its fresh database each time.

use std::str::FromStr;

use tower_sessions_014::SessionManagerLayer;
use tower_sessions_sqlx_store::MySqlStore;
use tower_sessions_sqlx_store::sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};

#[tokio::main]
async fn main() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let options = MySqlConnectOptions::from_str(&url).expect("DATABASE_URL");
    let database = options
        .get_database()
        .expect("DATABASE_URL names a database")
        .to_owned();
    let pool = MySqlPoolOptions::new()
        .max_connections(16)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .expect("connect to MySQL");
    let store = MySqlStore::new(pool)
        .with_schema_name(&database)
        .expect("the database's name is a valid schema name");
    store.migrate().await.expect("create the session table");
    let layer = SessionManagerLayer::new(store).with_secure(false);
    let app = session_bench_peers::session_routes!(tower_sessions_014::Session).layer(layer);
    session_bench_peers::serve(app).await;
}
