//! What only the in-memory store does: records, purges and eviction (merges
//! of concurrent writes are in `concurrency.rs`).

use std::sync::Arc;

use axum::routing::post;
use serde_json::json;
use session_examples::conformance::{Settings, Store};
use session_tests::TestApp;
use tokio::sync::Notify;
use typed_sessions::{
    AnyStorage, MemoryStorage, ServerStorage, Session, SessionId, SessionRecord, StorageContext,
};

async fn app_on(store: &MemoryStorage, max_age: Option<u64>) -> TestApp {
    let mut settings = Settings::new(Store::Memory);
    settings.max_age = max_age;
    TestApp::conformance_on(settings, AnyStorage::new(store.clone()), |routes| routes).await
}

#[tokio::test]
async fn one_record_per_live_session_and_none_after_invalidate() {
    let store = MemoryStorage::new();
    let app = app_on(&store, None).await;
    let first = app.session_with(r#"{"a": 1}"#).await;
    let _second = app.session_with(r#"{"a": 2}"#).await;
    assert_eq!(store.len(), 2);
    app.get("/session", None).await;
    assert_eq!(store.len(), 2, "an empty new session is not stored");
    app.post("/session/invalidate", Some(&first), "").await;
    assert_eq!(store.len(), 1);
    let login = app
        .post("/session/login", Some(&_second), r#"{"user": "ann"}"#)
        .await;
    assert_eq!(login.status, 200);
    assert_eq!(
        store.len(),
        1,
        "login replaces the record, it does not add one"
    );
}

#[tokio::test]
async fn a_forged_id_leaves_no_record() {
    let store = MemoryStorage::new();
    let app = app_on(&store, None).await;
    let forged = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let reply = app.patch(Some(forged), r#"{"a": 1}"#).await;
    assert_eq!(reply.status, 200);
    let issued = reply.new_cookie();
    assert_ne!(issued, forged, "the forged id is not adopted");
    assert_eq!(store.len(), 1, "one record, under the id the store drew");
    assert_eq!(
        app.get("/session", Some(forged)).await.json()["new"],
        true,
        "nothing is stored under the forged id"
    );
    assert_eq!(
        app.get("/session", Some(&issued)).await.data(),
        json!({"a": 1})
    );
}

#[tokio::test]
async fn expired_records_are_purged() {
    let store = MemoryStorage::new();
    let app = app_on(&store, Some(60)).await;
    app.session_with(r#"{"a": 1}"#).await;
    app.session_with(r#"{"a": 2}"#).await;
    // Records are kept through the second their max age ends in.
    app.clock.advance(61);
    // New sessions sweep the store a sixteenth at a time.
    for _ in 0..16 {
        app.session_with(r#"{"a": 3}"#).await;
    }
    assert_eq!(store.len(), 16, "the two expired records are gone");
}

/// Stores a new session of `max_age` seconds at time 0 straight into the
/// store; returns its id.
async fn create(store: &MemoryStorage, max_age: u64) -> SessionId {
    let mut record = SessionRecord::new(0, Some(max_age));
    record.data.insert("a".to_owned(), 1.into());
    store
        .create(&record, &StorageContext::new("session", 0))
        .await
        .unwrap()
}

/// Whether the store still holds the session `id`.
async fn holds(store: &MemoryStorage, id: &SessionId) -> bool {
    store
        .load(id, &StorageContext::new("session", 0))
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn a_full_store_drops_the_records_closest_to_expiry_first() {
    // Each of the store's sixteen parts holds four records; ids, which the
    // store draws, decide the part, so the checks below hold whichever
    // records share a part, as long as each part gets at least four late
    // ones: with 2000 late ones, about 125 per part.
    const PER_PART: usize = 4;
    let store = MemoryStorage::new().with_max_records(16 * PER_PART);
    // First sessions that expire soon, then sessions that expire later,
    // each of those a second sooner than the one before.
    let mut soon = Vec::new();
    for i in 0..400 {
        soon.push(create(&store, 1_000 + i).await);
    }
    let mut late = Vec::new();
    for i in 0..2_000 {
        late.push(create(&store, 100_000 - i).await);
    }
    assert_eq!(store.len(), 16 * PER_PART, "every part is full");

    let mut soon_kept = 0;
    for value in &soon {
        soon_kept += usize::from(holds(&store, value).await);
    }
    assert_eq!(
        soon_kept, 0,
        "each late session dropped one expiring sooner, while there were any"
    );
    // Closest to expiry first: each part keeps its newest session (it
    // arrived last, nothing was dropped for it yet) and, of the others,
    // the three expiring last, which are the first three late ones it got,
    // so the first three late ones of the whole store, whatever their
    // parts. Dropping the oldest first, or at random, loses them.
    for (i, value) in late.iter().enumerate().take(PER_PART - 1) {
        assert!(
            holds(&store, value).await,
            "late session {i} expires after every other of its part but was dropped"
        );
    }
    assert!(
        holds(&store, late.last().unwrap()).await,
        "the newest session is kept"
    );
}

#[tokio::test]
async fn a_write_racing_an_invalidate_does_not_bring_the_session_back() {
    let store = MemoryStorage::new();
    let loaded = Arc::new(Notify::new());
    let go = Arc::new(Notify::new());
    let (loaded_in_handler, go_in_handler) = (loaded.clone(), go.clone());
    let slow_write = move |session: Session| async move {
        loaded_in_handler.notify_one();
        go_in_handler.notified().await;
        session.insert("late", true).unwrap();
        "written"
    };
    let app = Arc::new(
        TestApp::conformance_on(
            Settings::new(Store::Memory),
            AnyStorage::new(store.clone()),
            |routes| routes.route("/slow-write", post(slow_write)),
        )
        .await,
    );
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    let slow = {
        let (app, cookie) = (app.clone(), cookie.clone());
        tokio::spawn(async move { app.post("/slow-write", Some(&cookie), "").await })
    };
    loaded.notified().await;
    app.post("/session/invalidate", Some(&cookie), "").await;
    go.notify_one();
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, 200);
    assert!(
        reply.set_cookies().is_empty(),
        "no cookie: neither the dead id again nor a removal that could race a new login"
    );
    assert!(store.is_empty(), "no record came back");
    assert_eq!(app.get("/session", Some(&cookie)).await.json()["new"], true);
}

#[tokio::test]
async fn an_invalidated_session_is_not_brought_back_by_a_late_write() {
    let store = MemoryStorage::new();
    let app = app_on(&store, None).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    // Another tab logs out; this tab's request, sent with the old cookie,
    // writes afterwards.
    app.post("/session/invalidate", Some(&cookie), "").await;
    let late = app.patch(Some(&cookie), r#"{"b": 2}"#).await;
    assert_eq!(late.status, 200);
    assert_eq!(late.json()["new"], true, "the old id no longer loads");
    let fresh = late.new_cookie();
    assert_ne!(fresh, cookie);
    assert_eq!(app.get("/session", Some(&cookie)).await.json()["new"], true);
}
