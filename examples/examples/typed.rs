//! A small shop with typed sessions: a signed-in user and a cart, each a
//! `#[derive(Session)]` struct over the same session (`examples/src/shop.rs`).
//!
//! ```text
//! cargo run --example typed
//! ```
//!
//! Then open <http://localhost:8081/> in a browser: sign in, add to the cart,
//! see your sessions (sign in from a second browser too) and sign out of one
//! or all of them, and visit the back office at `/admin`, a session of its
//! own kind beside the shop's. The same routes take plain form posts, so curl works too:
//!
//! ```text
//! curl -si -X POST localhost:8081/login -d name=ann     # note the cookie
//! curl -s  -X POST localhost:8081/cart/42 -H 'cookie: __Host-session=…'
//! curl -s  localhost:8081/ -H 'cookie: __Host-session=…'
//! curl -si -X POST localhost:8081/logout -H 'cookie: __Host-session=…'
//! ```
//!
//! Login calls `renew`, so a session id planted before login is worthless
//! after it. Sessions live in memory; `TYPED_ADDR` changes the address.

use session_examples::shop;
use typed_sessions::{MemoryStorage, SessionLayer};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let app = shop::app(SessionLayer::new(MemoryStorage::new()));
    let addr = std::env::var("TYPED_ADDR").unwrap_or_else(|_| "127.0.0.1:8081".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|error| panic!("cannot bind {addr}: {error}"));
    let addr = listener.local_addr().expect("bound");
    println!(
        "listening on http://{addr} (open http://localhost:{}/)",
        addr.port()
    );
    axum::serve(listener, app).await.expect("server runs");
}
