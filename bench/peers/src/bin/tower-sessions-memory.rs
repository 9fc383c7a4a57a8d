//! tower-sessions 0.15 with its memory store and private (encrypted)
//! cookies, on the benchmarked routes.

use tower_sessions::cookie::Key;
use tower_sessions::{MemoryStore, SessionManagerLayer};

#[tokio::main]
async fn main() {
    let layer = SessionManagerLayer::new(MemoryStore::default()).with_private(Key::generate());
    let app = session_bench_peers::session_routes!(tower_sessions::Session).layer(layer);
    session_bench_peers::serve(app).await;
}
