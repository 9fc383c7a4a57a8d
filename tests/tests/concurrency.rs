//! Concurrent requests of one session whose loads and saves really
//! interleave, on every server-side store: each request's handler waits at
//! a barrier after its session is loaded, so every request has loaded the
//! session before any of them saves, and then they all save at once, on the
//! multi-threaded runtime. A store that wrote whole records (last writer
//! wins) would keep one request's change and lose the others.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::patch;
use serde_json::{Map, Value, json};
use session_tests::{Store, TestApp, settings};
use tokio::sync::Barrier;
use typed_sessions::Session;

macro_rules! for_every_server_store {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::$case(super::Store::Memory).await })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::$case(super::Store::Redis).await })*
        }
        mod redis_cluster {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::$case(super::Store::RedisCluster).await })*
        }
        mod memcached {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::$case(super::Store::Memcached).await })*
        }
        mod aiohttp_redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::$case(super::Store::AiohttpRedis).await })*
        }
        mod aiohttp_memcached {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::$case(super::Store::AiohttpMemcached).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::$case(super::Store::Postgres).await })*
        }
        mod mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::$case(super::Store::MySql).await })*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::$case(super::Store::Sqlite).await })*
        }
    };
}

for_every_server_store!(
    changes_saved_after_every_request_loaded_are_all_kept,
    a_hot_session_answers_every_request,
);

/// Requests racing each other on one session.
const REQUESTS: usize = 8;

/// The conformance app plus `PATCH /race`, which applies a JSON object of
/// changes (`null` removes a key) once `racers` requests have loaded the
/// session.
async fn racing_app(store: Store, racers: usize) -> TestApp {
    let barrier = Arc::new(Barrier::new(racers));
    let race = move |session: Session, body: Bytes| {
        let barrier = barrier.clone();
        async move {
            // The extractor has loaded the session; wait for the others.
            barrier.wait().await;
            let changes: Map<String, Value> = serde_json::from_slice(&body).expect("a JSON object");
            for (key, value) in changes {
                if value.is_null() {
                    session.remove(&key);
                } else {
                    session.insert_value(&key, value);
                }
            }
            "saved"
        }
    };
    TestApp::conformance_with(settings(store), |routes| routes.route("/race", patch(race))).await
}

async fn changes_saved_after_every_request_loaded_are_all_kept(store: Store) {
    let app = Arc::new(racing_app(store, REQUESTS).await);
    let cookie = app.session_with(r#"{"start": true, "gone": 1}"#).await;
    // One request removes a key, the others each set one.
    let requests: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let (app, cookie) = (app.clone(), cookie.clone());
            let change = if i == 0 {
                json!({"gone": null})
            } else {
                json!({ format!("key{i}"): i })
            };
            tokio::spawn(async move {
                let body = change.to_string();
                let reply = app
                    .send(reqwest::Method::PATCH, "/race", Some(&cookie), Some(&body))
                    .await;
                assert_eq!(reply.status, 200, "{change}: {}", reply.body);
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(20), async {
        for request in requests {
            request.await.expect("the request's task");
        }
    })
    .await
    .expect("every request reached the barrier and finished");

    let mut expected = json!({"start": true});
    for i in 1..REQUESTS {
        expected[format!("key{i}")] = json!(i);
    }
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        expected,
        "every request's change is kept, and only those"
    );
}

/// A page that fires many parallel requests at one session, much
/// amplified: 32 requests load it, then all save at once, three times
/// over. On a store that merges by compare-and-swap each save used to lose
/// the swap to its siblings round after round until it gave up with a 503;
/// every request must be answered 2xx and keep its change.
async fn a_hot_session_answers_every_request(store: Store) {
    const RACERS: usize = 32;
    const ROUNDS: usize = 3;
    let app = Arc::new(racing_app(store, RACERS).await);
    let cookie = app.session_with(r#"{"start": true}"#).await;
    for round in 1..=ROUNDS {
        let requests: Vec<_> = (0..RACERS)
            .map(|i| {
                let (app, cookie) = (app.clone(), cookie.clone());
                tokio::spawn(async move {
                    let body = json!({ format!("key{i}"): round }).to_string();
                    app.send(reqwest::Method::PATCH, "/race", Some(&cookie), Some(&body))
                        .await
                })
            })
            .collect();
        let replies = tokio::time::timeout(Duration::from_secs(30), async {
            let mut replies = Vec::new();
            for request in requests {
                replies.push(request.await.expect("the request's task"));
            }
            replies
        })
        .await
        .expect("every request reached the barrier and finished");
        let failed: Vec<_> = replies
            .iter()
            .filter(|reply| reply.status != 200)
            .map(|reply| format!("{} {}", reply.status, reply.body))
            .collect();
        assert!(failed.is_empty(), "round {round}: {failed:?}");
    }
    // Then sustained: each of the 32 connections increments its own counter
    // of the session as fast as it is answered.
    const INCREMENTS: usize = 60;
    let writers: Vec<_> = (0..RACERS)
        .map(|i| {
            let (app, cookie) = (app.clone(), cookie.clone());
            tokio::spawn(async move {
                let path = format!("/session/incr?key=count{i}");
                let mut failed = Vec::new();
                for _ in 0..INCREMENTS {
                    let reply = app.post(&path, Some(&cookie), "").await;
                    if reply.status != 200 {
                        failed.push(format!("{} {}", reply.status, reply.body));
                    }
                }
                failed
            })
        })
        .collect();
    let mut failed = Vec::new();
    for writer in writers {
        failed.extend(writer.await.expect("the writer's task"));
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    let mut expected = json!({"start": true});
    for i in 0..RACERS {
        expected[format!("key{i}")] = json!(ROUNDS);
        expected[format!("count{i}")] = json!(INCREMENTS);
    }
    assert_eq!(app.get("/session", Some(&cookie)).await.data(), expected);
}
