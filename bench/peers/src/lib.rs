//! What the peer apps share: where to listen and the announcement the
//! benchmark script waits for (the same as the conformance app's).

use axum::Router;

/// Serves `app` on `CONFORMANCE_ADDR` (default `127.0.0.1:3000`), printing
/// `listening on http://ADDR` once ready.
pub async fn serve(app: Router) {
    let addr = std::env::var("CONFORMANCE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    println!("listening on http://{}", listener.local_addr().expect("bound"));
    axum::serve(listener, app).await.expect("serve");
}
