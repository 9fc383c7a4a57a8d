//! An API whose clients send `Authorization: Bearer <token>` instead of a
//! cookie (see `examples/src/api.rs` for the routes).
//!
//! ```text
//! cargo run --example api
//! curl -si -X POST localhost:8081/login -d '{"user": "ann"}' -H 'content-type: application/json'
//! # copy the Session-Token response header, then:
//! curl -s localhost:8081/me -H "Authorization: Bearer $TOKEN"
//! curl -si -X POST localhost:8081/logout -H "Authorization: Bearer $TOKEN"
//! ```
//!
//! `API_ADDR` changes the address.

use session_examples::api::app;
use typed_sessions::MemoryStorage;

#[tokio::main]
async fn main() {
    let addr = std::env::var("API_ADDR").unwrap_or_else(|_| "127.0.0.1:8081".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|error| panic!("cannot bind {addr}: {error}"));
    println!("listening on http://{addr}");
    axum::serve(listener, app(MemoryStorage::new()))
        .await
        .expect("the server runs");
}
