//! tower-sessions 0.14 with tower-sessions-redis-store 0.16 (the newest
//! pair that works together) on `REDIS_URL`, on the benchmarked routes,
//! with a fred pool of `FRED_POOL_SIZE` connections (default 2).

use tower_sessions_014::SessionManagerLayer;
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};

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
    let app = session_bench_peers::session_routes!(tower_sessions_014::Session).layer(layer);
    session_bench_peers::serve(app).await;
}
