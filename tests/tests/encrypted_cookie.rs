//! What only the encrypted cookie storage does: key rotation, binding to
//! the cookie name, the envelope's versions, and the cache of opened
//! cookies.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use session_examples::conformance::{Settings, Store};
use session_tests::{START, TestApp};
use typed_sessions::{EncryptedCookieStorage, EncryptionKey, storage::AnyStorage};

fn keyed(key: &EncryptionKey, old: Vec<EncryptionKey>) -> Settings {
    let mut settings = Settings::new(Store::Encrypted);
    settings.secret = Some(key.clone());
    settings.old_secrets = old;
    settings
}

#[tokio::test]
async fn rotated_keys_still_open_old_cookies_and_reseal_with_the_new_key() {
    let old_key = EncryptionKey::generate();
    let new_key = EncryptionKey::generate();

    let before = TestApp::conformance(keyed(&old_key, vec![])).await;
    let old_cookie = before.session_with(r#"{"user": "ann"}"#).await;

    let rotated = TestApp::conformance(keyed(&new_key, vec![old_key.clone()])).await;
    let reply = rotated.get("/session", Some(&old_cookie)).await;
    assert_eq!(
        reply.data(),
        json!({"user": "ann"}),
        "an old key still reads"
    );
    let resealed = rotated
        .patch(Some(&old_cookie), r#"{"n": 1}"#)
        .await
        .new_cookie();

    let new_only = TestApp::conformance(keyed(&new_key, vec![])).await;
    assert_eq!(
        new_only.get("/session", Some(&resealed)).await.data(),
        json!({"user": "ann", "n": 1}),
        "the next write seals with the current key"
    );
    assert_eq!(
        new_only.get("/session", Some(&old_cookie)).await.json()["new"],
        true
    );

    let old_only = TestApp::conformance(keyed(&old_key, vec![])).await;
    assert_eq!(
        old_only.get("/session", Some(&resealed)).await.json()["new"],
        true,
        "old keys never seal"
    );
}

#[tokio::test]
async fn a_cookie_from_another_key_is_a_new_session() {
    let ours = TestApp::conformance(keyed(&EncryptionKey::generate(), vec![])).await;
    let theirs = TestApp::conformance(keyed(&EncryptionKey::generate(), vec![])).await;
    let foreign = theirs.session_with(r#"{"admin": true}"#).await;
    let reply = ours.get("/session", Some(&foreign)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["new"], true);
    assert_eq!(reply.data(), json!({}));
}

#[tokio::test]
async fn a_value_moved_to_another_cookie_name_does_not_open() {
    let key = EncryptionKey::generate();
    let mut settings = keyed(&key, vec![]);
    settings.cookie_name = Some("a".into());
    let first = TestApp::conformance(settings).await;
    let value = first.session_with(r#"{"user": "ann"}"#).await;

    let mut settings = keyed(&key, vec![]);
    settings.cookie_name = Some("b".into());
    let second = TestApp::conformance(settings).await;
    assert_eq!(
        second.get("/session", Some(&value)).await.json()["new"],
        true
    );
    assert_eq!(
        first.get("/session", Some(&value)).await.data(),
        json!({"user": "ann"})
    );
}

#[tokio::test]
async fn the_cookie_does_not_show_the_data() {
    let app = TestApp::conformance(keyed(&EncryptionKey::generate(), vec![])).await;
    let cookie = app.session_with(r#"{"secret": "hunter2"}"#).await;
    assert!(!cookie.contains("hunter2"));
    assert!(
        cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
}

/// The envelope version a cookie value was sealed in.
fn envelope_version(cookie: &str) -> u8 {
    URL_SAFE_NO_PAD.decode(cookie).expect("base64url")[0]
}

/// An app on `storage`, whose cookie is named `session`.
async fn app_on(storage: EncryptedCookieStorage) -> TestApp {
    let mut settings = Settings::new(Store::Encrypted);
    settings.cookie_name = Some("session".into());
    TestApp::conformance_on(settings, AnyStorage::new(storage), |routes| routes).await
}

#[tokio::test]
async fn a_cookie_of_envelope_version_1_still_opens_and_is_sealed_again_in_version_2() {
    // `{"created": START, "updated": START, "max_age": 3600, "session":
    // {"n": 1, "user": "ann"}}` sealed for the cookie `session` by the
    // version 1 code as released (commit 32d2b0e), with this key.
    let key = EncryptionKey::from_bytes(b"typed-sessions fixed test key 01").unwrap();
    let v1 = "AaZU34QM82QZ0yVFJya0ouwB6f-TLbv6GZYYLadTRTfYC1wlnemuxMeuIg_-Qp-Y3PNCqb1__f9VnPg6KiLLQ1BmcME_d29Q2S8ZhoIxzRTJLzmtkgaX3130hRdyv8J5ChaFFIzakYa0RnoepOwOK2RzsAmesfzf5es";
    assert_eq!(START, 1_700_000_000, "the vector was sealed at START");
    assert_eq!(envelope_version(v1), 1);

    for app in [
        app_on(EncryptedCookieStorage::new(key.clone())).await,
        app_on(EncryptedCookieStorage::new(EncryptionKey::generate()).with_old_keys([key.clone()]))
            .await,
    ] {
        let reply = app.get("/session", Some(v1)).await;
        assert_eq!(reply.json()["new"], false, "{}", reply.body);
        assert_eq!(reply.data(), json!({"n": 1, "user": "ann"}));

        let resealed = app.patch(Some(v1), r#"{"n": 2}"#).await.new_cookie();
        assert_eq!(
            envelope_version(&resealed),
            2,
            "every write seals in version 2"
        );
        assert_eq!(
            app.get("/session", Some(&resealed)).await.data(),
            json!({"n": 2, "user": "ann"})
        );
    }
}

#[tokio::test]
async fn new_cookies_are_sealed_in_envelope_version_2() {
    let app = TestApp::conformance(keyed(&EncryptionKey::generate(), vec![])).await;
    let cookie = app.session_with(r#"{"user": "ann"}"#).await;
    assert_eq!(envelope_version(&cookie), 2);
}

#[tokio::test]
async fn a_storage_given_old_keys_does_not_lend_what_it_opened_to_the_one_it_came_from() {
    let old_key = EncryptionKey::generate();
    let before = app_on(EncryptedCookieStorage::new(old_key.clone())).await;
    let old_cookie = before.session_with(r#"{"user": "ann"}"#).await;

    let current = EncryptedCookieStorage::new(EncryptionKey::generate());
    let rotated = app_on(current.clone().with_old_keys([old_key])).await;
    let current = app_on(current).await;

    assert_eq!(
        rotated.get("/session", Some(&old_cookie)).await.data(),
        json!({"user": "ann"}),
        "the storage with the old key opens it"
    );
    let reply = current.get("/session", Some(&old_cookie)).await;
    assert_eq!(
        reply.json()["new"],
        true,
        "the storage without the old key must not open it: {}",
        reply.body
    );
    assert_eq!(reply.data(), json!({}));
}

mod cache_memory {
    //! What the cache of opened cookies holds per cookie, counted by a
    //! global allocator: the bytes each allocation really takes from glibc's
    //! malloc (the request plus its 8-byte header, rounded up to 16, at
    //! least 32), live on the measuring thread.

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    use serde_json::{Value, json};
    use typed_sessions::{
        EncryptedCookieStorage, EncryptionKey,
        storage::{CookieStorage, SessionRecord, StorageContext},
    };

    struct Counting;

    thread_local! {
        static LIVE: Cell<i64> = const { Cell::new(0) };
    }

    fn chunk(size: usize) -> i64 {
        ((size + 8 + 15) & !15).max(32) as i64
    }

    fn count(delta: i64) {
        // During a thread's teardown the counter may be gone: not measured.
        let _ = LIVE.try_with(|live| live.set(live.get() + delta));
    }

    // SAFETY: forwards every call to the system allocator unchanged; it only
    // counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count(chunk(layout.size()));
            // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            count(-chunk(layout.size()));
            // SAFETY: `ptr` came from `alloc` above, i.e. from `System`.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count(chunk(new_size) - chunk(layout.size()));
            // SAFETY: as for `alloc` and `dealloc`.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    fn live() -> i64 {
        LIVE.with(Cell::get)
    }

    /// The session of `shape(n)` for the largest `n` whose cookie value
    /// still fits a cookie (4096 bytes).
    fn fullest(storage: &EncryptedCookieStorage, shape: impl Fn(usize) -> Value) -> SessionRecord {
        let cx = StorageContext::new("session", 1_700_000_000);
        let record = |n: usize| {
            let mut record = SessionRecord::new(
                1_700_000_000,
                typed_sessions::storage::MaxAge::Seconds(3600),
            );
            let Value::Object(data) = shape(n) else {
                panic!("a shape is an object")
            };
            record.data = data;
            record
        };
        let fits = |n: usize| storage.seal(&record(n), &cx).unwrap().len() <= 4096;
        let (mut low, mut high) = (1, 1);
        // A shape that does not grow with `n` fits at every size.
        while fits(high) {
            if high >= 1 << 16 {
                return record(1);
            }
            (low, high) = (high, high * 2);
        }
        while high - low > 1 {
            let mid = (low + high) / 2;
            if fits(mid) { low = mid } else { high = mid }
        }
        record(low)
    }

    /// Bytes `storage` keeps after opening `cookies` cookies of `record`
    /// (each sealed apart, so each is new to the cache).
    fn kept(storage: &EncryptedCookieStorage, record: &SessionRecord, cookies: usize) -> i64 {
        let cx = StorageContext::new("session", 1_700_000_000);
        let values: Vec<String> = (0..cookies)
            .map(|_| storage.seal(record, &cx).unwrap())
            .collect();
        let before = live();
        for value in &values {
            drop(storage.open(value, &cx).expect("opens"));
        }
        live() - before
    }

    /// `depth` objects of one key, each in the one before.
    fn chain(depth: usize) -> Value {
        (0..depth).fold(json!(0), |inner, _| json!({"": inner}))
    }

    type Shape = Box<dyn Fn(usize) -> Value>;

    /// Sessions that fill a cookie, from the cheapest to decode to the
    /// costliest found: a map of one key is a B-tree node of 640 bytes
    /// for 5 or 7 bytes of JSON.
    fn shapes() -> Vec<(&'static str, Shape)> {
        vec![
            (
                "a session of 100 bytes",
                Box::new(|_| json!({"user": "ann", "csrf": "x".repeat(40)})),
            ),
            ("one string", Box::new(|n| json!({"blob": "x".repeat(n)}))),
            (
                "keys of small numbers",
                Box::new(|n| {
                    Value::Object((0..n).map(|i| (format!("k{i}"), json!(i % 10))).collect())
                }),
            ),
            (
                "a cart: objects of two keys",
                Box::new(
                    |n| json!({"cart": (0..n).map(|i| json!({"id": i % 10, "qty": 1})).collect::<Vec<_>>()}),
                ),
            ),
            (
                "objects of one key",
                Box::new(|n| json!({"list": vec![json!({"": 0}); n]})),
            ),
            (
                "objects of one key, nested 60 deep (a value may nest 64)",
                Box::new(
                    |n| json!({"list": (0..n.div_ceil(60)).map(|i| chain(60.min(n - i * 60))).collect::<Vec<_>>()}),
                ),
            ),
        ]
    }

    /// What one cached cookie costs, per shape; `cargo test --test
    /// encrypted_cookie cost_per -- --nocapture` prints the table the
    /// README quotes.
    #[test]
    fn cost_per_cached_cookie() {
        const COOKIES: usize = 64;
        let key = EncryptionKey::generate();
        for (name, shape) in shapes() {
            let record = fullest(&EncryptedCookieStorage::new(key.clone()), &shape);
            let json = serde_json::to_vec(&record).unwrap().len();
            // A cache large enough to keep every cookie of the measure.
            let roomy = EncryptedCookieStorage::new(key.clone()).with_cache_capacity(1 << 20);
            let cached = kept(&roomy, &record, COOKIES) / COOKIES as i64;
            let uncached = EncryptedCookieStorage::new(key.clone()).with_cache_capacity(0);
            println!("{name}: {json} bytes of JSON, {cached} bytes per cached cookie");
            assert_eq!(
                kept(&uncached, &record, 8),
                0,
                "{name}: nothing kept uncached"
            );
            assert!(cached > json as i64, "{name}: the cookie is kept");
        }
    }

    #[test]
    fn the_cache_holds_at_most_8_kib_per_cookie_of_its_capacity() {
        // The tables of the 16 parts, made for `capacity` entries: charged
        // to the entries while they are full, kept when a part is emptied.
        let tables = |capacity: usize| (capacity * 64) as i64;
        let key = EncryptionKey::generate();
        for (name, shape) in shapes() {
            let record = fullest(&EncryptedCookieStorage::new(key.clone()), &shape);
            // More cookies than fit: a small cache, then the default one
            // (4096) with the costliest sessions it may have to keep.
            for (capacity, cookies) in [(512, 640), (4096, 256)] {
                let storage =
                    EncryptedCookieStorage::new(key.clone()).with_cache_capacity(capacity);
                let kept = kept(&storage, &record, cookies);
                println!("{name}: {} KiB kept of {cookies} opened", kept >> 10);
                assert!(
                    kept <= (capacity * 8 * 1024) as i64 + tables(capacity),
                    "{name}: {kept} bytes kept for a capacity of {capacity}"
                );
            }
        }
    }
}
