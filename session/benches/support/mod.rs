//! What the benches share: driving ready futures, an app per storage, and a
//! session to measure the map on.

#![allow(dead_code)]

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, header};
use axum::routing::{get, post};
use tower::ServiceExt;
use typed_sessions::{
    EncryptedCookieStorage, EncryptionKey, MemoryStorage, Session, SessionLayer,
    storage::{AnyStorage, SimpleCookieStorage},
};

/// Runs a future that is ready at once (every in-process storage is).
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the future was not ready"),
    }
}

/// The storages measured in process, by name.
pub fn storages() -> Vec<(&'static str, AnyStorage)> {
    vec![
        ("simple", AnyStorage::new(SimpleCookieStorage::new())),
        (
            "encrypted",
            AnyStorage::new(EncryptedCookieStorage::new(EncryptionKey::generate())),
        ),
        ("memory", AnyStorage::new(MemoryStorage::new())),
    ]
}

async fn read(session: Session) -> String {
    session.get::<i64>("count").unwrap_or(0).to_string()
}

async fn write(session: Session) -> String {
    let count = session.get::<i64>("count").unwrap_or(0) + 1;
    session.insert("count", count).expect("a number serializes");
    count.to_string()
}

/// The three routes, without a layer: the bare router is the floor.
pub fn routes() -> Router {
    Router::new()
        .route("/untouched", get(|| async { "ok" }))
        .route("/read", get(read))
        .route("/write", post(write))
}

/// The routes behind a session layer over `storage`.
pub fn app(storage: AnyStorage) -> Router {
    routes().layer(
        SessionLayer::builder(storage)
            .build()
            .expect("valid configuration"),
    )
}

pub fn request(method: &str, path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    builder.body(Body::empty()).expect("a valid request")
}

pub async fn call(app: &Router, request: Request<Body>) -> Response<Body> {
    app.clone().oneshot(request).await.expect("infallible")
}

/// A valid session cookie (`name=value`) holding `count`, made by `app`.
pub async fn cookie(app: &Router) -> String {
    let response = call(app, request("POST", "/write", None)).await;
    let header = response.headers()[header::SET_COOKIE]
        .to_str()
        .expect("ASCII");
    header.split(';').next().expect("name=value").to_owned()
}

/// A session loaded through the layer, kept for benches of the map itself.
pub async fn loaded_session() -> Session {
    let slot: Arc<Mutex<Option<Session>>> = Arc::default();
    let keep = slot.clone();
    let router = Router::new()
        .route(
            "/",
            get(move |session: Session| {
                let keep = keep.clone();
                async move {
                    for i in 0..8 {
                        session.insert(&format!("key{i}"), i).expect("serializes");
                    }
                    *keep.lock().expect("not poisoned") = Some(session);
                }
            }),
        )
        .layer(SessionLayer::new(MemoryStorage::new()));
    call(&router, request("GET", "/", None)).await;
    slot.lock()
        .expect("not poisoned")
        .take()
        .expect("the handler ran")
}
