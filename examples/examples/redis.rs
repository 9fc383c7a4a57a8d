//! The visits example with sessions in Redis: several processes of this app
//! behind a load balancer share their sessions.
//!
//! Start a Redis and the app:
//!
//! ```text
//! redis-server --port 6379 --save '' &          # Debian: apt-get install redis-server
//! REDIS_URL=redis://127.0.0.1:6379/0 cargo run --example redis
//! ```
//!
//! Then open <http://localhost:8082/> and reload; `redis-cli keys 'session:*'`
//! shows one hash per session, under a hash of its id. `REDIS_ADDR` changes
//! the app's address.

use std::process::ExitCode;
use std::time::Duration;

use session_examples::visits;
use typed_sessions::{RedisStorage, SessionLayer};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,redis=error")),
        )
        .init();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
    let storage = match RedisStorage::connect(&url).await {
        Ok(storage) => storage,
        Err(error) => {
            eprintln!("redis: cannot reach REDIS_URL {url}: {error} (is redis-server running?)");
            return ExitCode::FAILURE;
        }
    };
    let layer = SessionLayer::builder(storage)
        .with_max_age(Some(Duration::from_secs(30 * 60)))
        .build()
        .expect("valid session configuration");
    let app = visits::app(layer);

    let addr = std::env::var("REDIS_ADDR").unwrap_or_else(|_| "127.0.0.1:8082".to_owned());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("redis: cannot bind {addr}: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "listening on http://{}",
        listener.local_addr().expect("bound")
    );
    if let Err(error) = axum::serve(listener, app).await {
        eprintln!("redis: server failed: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
