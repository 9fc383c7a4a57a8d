//! What only the in-memory store does: records, purges, the cap and its
//! eviction, and the memory a record takes (merges of concurrent writes are
//! in `concurrency.rs`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use axum::routing::post;
use serde_json::json;
use session_examples::conformance::{Settings, Store};
use session_tests::TestApp;
use tokio::sync::Notify;
use typed_sessions::{
    MemoryStorage, Session,
    storage::{AnyStorage, MaxAge, ServerStorage, SessionId, SessionRecord, StorageContext},
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
    let mut record = SessionRecord::new(0, MaxAge::Seconds(max_age));
    record.data.insert("a".to_owned(), 1.into());
    let cx = StorageContext::new("session", 0).with_idle_limit(Some(max_age));
    store.create(&record, &cx).await.unwrap()
}

/// Whether the store still holds the session `id` (which, as any request
/// would, takes it off probation).
async fn holds(store: &MemoryStorage, id: &SessionId) -> bool {
    store
        .load(id, &StorageContext::new("session", 0))
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn a_full_store_drops_the_records_closest_to_expiry_first() {
    drops_the_records_closest_to_expiry_first(false).await;
}

#[tokio::test]
async fn a_store_full_of_returning_sessions_drops_those_closest_to_expiry_first() {
    drops_the_records_closest_to_expiry_first(true).await;
}

/// Fills a small store with sessions of known expiry, each requested once
/// more right after it was made if `returning`, so that all the store holds
/// are of one class: on probation (one-shot sessions) or returning.
async fn drops_the_records_closest_to_expiry_first(returning: bool) {
    // Each of the store's sixteen parts holds four records; ids, which the
    // store draws, decide the part, so the checks below hold whichever
    // records share a part, as long as each part gets at least four late
    // ones: with 2000 late ones, about 125 per part.
    const PER_PART: usize = 4;
    let store = MemoryStorage::new().with_max_records(16 * PER_PART);
    let new_session = async |max_age| {
        let id = create(&store, max_age).await;
        if returning {
            assert!(holds(&store, &id).await, "a new session is kept");
        }
        id
    };
    // First sessions that expire soon, then sessions that expire later,
    // each of those a second sooner than the one before.
    let mut soon = Vec::new();
    for i in 0..400 {
        soon.push(new_session(1_000 + i).await);
    }
    let mut late = Vec::new();
    for i in 0..2_000 {
        late.push(new_session(100_000 - i).await);
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
async fn returning_users_keep_their_sessions_through_a_flood_of_one_shot_sessions() {
    // A hundred records per part; the flood is ten times the whole cap.
    const CAP: usize = 1_600;
    const USERS: usize = 100;
    const ROUNDS: usize = 10;
    let store = MemoryStorage::new().with_max_records(CAP);
    let app = app_on(&store, Some(3_600)).await;
    let mut users = Vec::new();
    for user in 0..USERS {
        let cookie = app.session_with(&format!(r#"{{"user": {user}}}"#)).await;
        // The user comes back: their session leaves probation.
        assert_eq!(
            app.get("/session", Some(&cookie)).await.data(),
            json!({"user": user})
        );
        users.push(cookie);
    }
    for round in 0..ROUNDS {
        // Clients without cookies, each writing once (a crawler, an
        // attacker): their sessions expire after the users', who only read.
        app.clock.advance(1);
        for _ in 0..CAP * 10 / ROUNDS {
            let reply = app.patch(None, r#"{"n": 1}"#).await;
            assert_eq!(reply.status, 200);
        }
        for (user, cookie) in users.iter().enumerate() {
            let reply = app.get("/session", Some(cookie)).await;
            assert_eq!(
                reply.data(),
                json!({"user": user}),
                "user {user} lost their session after {} one-shot sessions",
                (round + 1) * CAP * 10 / ROUNDS
            );
        }
    }
    assert!(store.len() <= CAP, "{} records kept", store.len());
}

#[tokio::test]
async fn the_store_is_capped_by_default() {
    let over = MemoryStorage::DEFAULT_MAX_RECORDS + 10_000;
    let store = MemoryStorage::new();
    for _ in 0..over {
        create(&store, 3_600).await;
    }
    let kept = store.len();
    assert!(
        kept <= MemoryStorage::DEFAULT_MAX_RECORDS,
        "{kept} records kept, over the default cap"
    );
    // Every part is full, give or take the rounding of the cap per part.
    assert!(
        kept >= MemoryStorage::DEFAULT_MAX_RECORDS - 16,
        "{kept} records kept"
    );

    let unbounded = MemoryStorage::new().without_max_records();
    for _ in 0..over {
        create(&unbounded, 3_600).await;
    }
    assert_eq!(
        unbounded.len(),
        over,
        "without a cap, every session is kept"
    );
}

/// Counts, for each thread, the bytes it holds from the allocator, as
/// glibc's malloc reserves them: the size asked for and 8 bytes of header,
/// in steps of 16, at least 32. Tests of other threads do not count.
struct Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
}

fn reserved(size: usize) -> isize {
    ((size + 8).next_multiple_of(16)).max(32) as isize
}

fn count(bytes: isize) {
    // No allocation here: the cell is a const-initialised thread local.
    let _ = HELD.try_with(|held| held.set(held.get() + bytes));
}

// SAFETY: forwards every call to the system allocator unchanged; it only
// counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(reserved(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` or `realloc` above, i.e. from
        // `System`, with this layout.
        unsafe { System.dealloc(ptr, layout) };
        count(-reserved(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc` and `dealloc`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(reserved(new_size) - reserved(layout.size()));
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The output of a future that is ready at once, as the memory store's are.
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the memory store's futures are ready at once"),
    }
}

/// The bytes one session of `data` takes in a store of `sessions` of them,
/// everything the store allocates for it included, as seen by this thread.
fn bytes_per_session(sessions: usize, data: serde_json::Value) -> isize {
    let mut record = SessionRecord::new(1_764_000_000, MaxAge::Seconds(86_400));
    record.data = data.as_object().cloned().unwrap();
    let cx = StorageContext::new("session", 1_764_000_000);
    // The thread's random generator and buffers are allocated once, before.
    let store = MemoryStorage::new().without_max_records();
    ready(store.create(&record, &cx)).unwrap();
    let before = HELD.get();
    for _ in 1..sessions {
        ready(store.create(&record, &cx)).unwrap();
    }
    let held = HELD.get() - before;
    assert_eq!(store.len(), sessions);
    held / (sessions - 1) as isize
}

#[test]
fn a_one_key_session_takes_at_most_250_bytes() {
    // Sixteen parts of 3,600 records: each part's table has just doubled,
    // to 8,192 slots, and is at its emptiest (44% full), the worst case;
    // at 100,000 records (the default cap) it is 76% full.
    for sessions in [57_600, MemoryStorage::DEFAULT_MAX_RECORDS] {
        let one_key = bytes_per_session(sessions, json!({"n": 1}));
        let ten_keys = bytes_per_session(
            sessions,
            json!({"k0": 0, "k1": 1, "k2": 2, "k3": 3, "k4": 4, "k5": 5, "k6": 6, "k7": 7, "k8": 8, "k9": 9}),
        );
        println!(
            "{sessions} sessions: {one_key} bytes per one-key session, {ten_keys} per ten-key session"
        );
        assert!(
            one_key <= 250,
            "a one-key session takes {one_key} bytes in a store of {sessions}"
        );
    }
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
