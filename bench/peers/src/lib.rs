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

/// The benchmarked routes on a tower-sessions `Session` type (0.14 and
/// 0.15 each have their own): `GET /session` reads `count`, `POST
/// /session/incr?key=K` increments `K`, `GET /untouched` leaves the
/// session alone. A store failure is a 503, as in the conformance app.
#[macro_export]
macro_rules! session_routes {
    ($session:ty) => {{
        use ::axum::http::StatusCode;
        use ::axum::Json;
        use ::serde_json::{Value, json};

        async fn show(session: $session) -> Result<Json<Value>, StatusCode> {
            let count: Option<i64> = session.get("count").await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
            Ok(Json(json!({"new": count.is_none(), "identity": null, "empty": count.is_none(), "data": {"count": count}})))
        }

        async fn increment(
            session: $session,
            ::axum::extract::Query(query): ::axum::extract::Query<::std::collections::HashMap<String, String>>,
        ) -> Result<Json<Value>, StatusCode> {
            let key = query.get("key").ok_or(StatusCode::BAD_REQUEST)?;
            let value = session.get::<i64>(key).await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?.unwrap_or(0) + 1;
            session.insert(key, value).await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
            Ok(Json(json!({ "value": value })))
        }

        ::axum::Router::new()
            .route("/session", ::axum::routing::get(show))
            .route("/session/incr", ::axum::routing::post(increment))
            .route("/untouched", ::axum::routing::get(|| async { "ok" }))
    }};
}
