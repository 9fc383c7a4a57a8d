//! An API for mobile and command-line clients: sessions carried in
//! `Authorization: Bearer <token>` instead of a cookie, on the memory store.
//! `examples/api` serves it; `tests/tests/api.rs` drives it.
//!
//! - `POST /login` with `{"user": "ann"}` starts a session bound to the
//!   user and answers with its token in `Session-Token`;
//! - `GET /me` answers who the token belongs to and how many requests it
//!   made;
//! - `GET /me/sessions` lists the user's active sessions, `POST
//!   /me/sessions/revoke` ends them all ("log out everywhere");
//! - `POST /logout` ends this one (an empty `Session-Token` says so).

use axum::Router;
use axum::extract::Json;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};
use typed_sessions::{MemoryStorage, Session, SessionLayer, Transport, TypedSession, UserSessions};

/// What the API keeps in a session.
#[derive(typed_sessions::Session)]
pub struct Client {
    /// Who signed in.
    pub user: Option<String>,
    /// Requests made with this token.
    #[session(default)]
    pub calls: u64,
}

/// The API's routes behind a header-token session layer over `storage`.
pub fn app(storage: MemoryStorage) -> Router {
    let layer = SessionLayer::builder(storage)
        .with_transport(Transport::Header)
        .build()
        .expect("header tokens on a server-side storage");
    Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/me/sessions", get(sessions))
        .route("/me/sessions/revoke", post(revoke_all))
        .route("/logout", post(logout))
        .layer(layer)
}

async fn login(session: Session, Json(body): Json<Value>) -> Result<Json<Value>, StatusCode> {
    let user = body["user"].as_str().ok_or(StatusCode::BAD_REQUEST)?;
    // A real API checks a password or a signed assertion here.
    session
        .insert("user", user)
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    session.bind_user(user);
    Ok(Json(json!({ "user": user })))
}

async fn me(client: TypedSession<Client>) -> Result<Json<Value>, StatusCode> {
    let user = client.user().ok_or(StatusCode::UNAUTHORIZED)?;
    *client.calls_mut() += 1;
    Ok(Json(json!({ "user": user, "calls": client.calls() })))
}

async fn sessions(session: Session, sessions: UserSessions) -> Result<Json<Value>, StatusCode> {
    let user = session.user().ok_or(StatusCode::UNAUTHORIZED)?;
    let live = sessions.of(&user).await.map_err(|error| error.status())?;
    let live: Vec<Value> = live
        .iter()
        .map(|s| json!({ "created": s.created, "last_seen": s.last_seen }))
        .collect();
    Ok(Json(json!({ "sessions": live })))
}

async fn revoke_all(session: Session, sessions: UserSessions) -> Result<Json<Value>, StatusCode> {
    let user = session.user().ok_or(StatusCode::UNAUTHORIZED)?;
    let revoked = sessions
        .revoke(&user)
        .await
        .map_err(|error| error.status())?;
    Ok(Json(json!({ "revoked": revoked })))
}

async fn logout(session: Session) -> StatusCode {
    session.invalidate();
    StatusCode::NO_CONTENT
}
