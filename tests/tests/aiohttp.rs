//! Sessions shared with the real aiohttp_session (Python, from PyPI, see
//! `tests/src/python.rs`): for each of its four formats, the Rust
//! conformance app and a small aiohttp app run side by side on one secret,
//! one cookie name and the same servers, and a user goes back and forth
//! between them. Both apps' clocks are set by the tests (the Rust layer's
//! `ManualClock`, the Python app's patched `time.time`), so expiry is
//! checked at the exact second on both sides, without waiting.

use std::sync::Arc;

use axum::routing::patch;
use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};
use session_tests::python::PythonApp;
use session_tests::servers::shared_redis;
use session_tests::{Reply, START, Store, TestApp, settings};
use tokio::sync::Barrier;
use typed_sessions::storage::AnyStorage;
use typed_sessions::{EncryptionKey, Session, aiohttp};

/// The secret both sides use: the Python side's `secret_key` bytes.
const SECRET: &[u8; 32] = b"aiohttp interop test secret 32b!";
const COOKIE: &str = aiohttp::DEFAULT_COOKIE_NAME;

macro_rules! for_every_aiohttp_format {
    ($($case:ident),* $(,)?) => {
        mod encrypted {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::Store::AiohttpEncrypted).await })*
        }
        mod nacl {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::Store::AiohttpNacl).await })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::Store::AiohttpRedis).await })*
        }
        mod memcached {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::Store::AiohttpMemcached).await })*
        }
    };
}

for_every_aiohttp_format!(
    python_writes_and_rust_reads,
    rust_writes_and_python_reads,
    a_user_alternating_between_the_apps_keeps_one_session_and_every_key,
    expiry_agrees_to_the_second,
    a_tampered_cookie_is_refused_on_both_sides,
);

macro_rules! for_every_aiohttp_server_store {
    ($($case:ident),* $(,)?) => {
        mod redis_records {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::Store::AiohttpRedis).await })*
        }
        mod memcached_records {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::Store::AiohttpMemcached).await })*
        }
    };
}

for_every_aiohttp_server_store!(
    a_python_write_during_a_rust_request_is_merged_not_lost,
    a_session_python_invalidates_during_a_rust_request_stays_ended,
);

fn store_name(store: Store) -> &'static str {
    match store {
        Store::AiohttpEncrypted => "aiohttp-encrypted",
        Store::AiohttpNacl => "aiohttp-nacl",
        Store::AiohttpRedis => "aiohttp-redis",
        Store::AiohttpMemcached => "aiohttp-memcached",
        other => panic!("{other:?} is not an aiohttp_session format"),
    }
}

/// The Rust app and the Python app on one format, secret, cookie name and
/// server, both at [`START`].
struct Apps {
    rust: TestApp,
    python: PythonApp,
}

impl Apps {
    async fn start(store: Store, max_age: Option<u64>) -> Self {
        Self::start_with(store, max_age, |routes| routes).await
    }

    async fn start_with(
        store: Store,
        max_age: Option<u64>,
        extend: impl FnOnce(axum::Router) -> axum::Router,
    ) -> Self {
        let mut settings = settings(store);
        settings.secret = Some(EncryptionKey::from_bytes(SECRET).unwrap());
        settings.cookie_name = Some(COOKIE.to_owned());
        settings.max_age = max_age;
        let mut env = vec![
            ("SESSION_STORE", store_name(store).to_owned()),
            (
                "SESSION_SECRET",
                base64::engine::general_purpose::STANDARD.encode(SECRET),
            ),
            ("SESSION_COOKIE_NAME", COOKIE.to_owned()),
            ("REDIS_URL", settings.redis_url.clone()),
            ("MEMCACHED_URL", settings.memcached_servers[0].clone()),
        ];
        if let Some(max_age) = max_age {
            env.push(("SESSION_MAX_AGE", max_age.to_string()));
        }
        let rust = TestApp::conformance_with(settings, extend).await;
        let python = PythonApp::start(&env, START);
        Self { rust, python }
    }

    async fn set_time(&self, now: u64) {
        self.rust.clock.set(now);
        self.python.set_time(now).await;
    }
}

/// The cookie after `reply`: the one it sets, else the one sent.
fn next_cookie(reply: &Reply, sent: &str) -> String {
    assert_eq!(reply.status, 200, "{}", reply.body);
    match reply.session_set_cookie() {
        Some(_) => reply.new_cookie(),
        None => sent.to_owned(),
    }
}

/// The session view's data, for a reply that must be 200.
fn data(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.data()
}

async fn python_writes_and_rust_reads(store: Store) {
    let apps = Apps::start(store, Some(3600)).await;
    let written = apps
        .python
        .send(
            Method::PATCH,
            "/session",
            None,
            Some(r#"{"user": "ann\u00e9", "roles": ["a", "b"], "n": 12345678901234567}"#),
        )
        .await;
    let cookie = written.new_cookie();
    let read = apps.rust.get("/session", Some(&cookie)).await;
    assert_eq!(
        data(&read),
        json!({"user": "ann\u{e9}", "roles": ["a", "b"], "n": 12345678901234567u64})
    );
    assert_eq!(read.json()["new"], false);
    if store == Store::AiohttpRedis || store == Store::AiohttpMemcached {
        assert_eq!(
            read.json()["identity"],
            cookie.as_str(),
            "the id Python made"
        );
    }
}

async fn rust_writes_and_python_reads(store: Store) {
    let apps = Apps::start(store, Some(3600)).await;
    let written = apps
        .rust
        .patch(
            None,
            r#"{"user": "bob", "nested": {"deep": [1, {"x": null}]}}"#,
        )
        .await;
    let cookie = written.new_cookie();
    let read = apps
        .python
        .send(Method::GET, "/session", Some(&cookie), None)
        .await;
    assert_eq!(
        data(&read),
        json!({"user": "bob", "nested": {"deep": [1, {"x": null}]}})
    );
    assert_eq!(read.json()["new"], false);
    if store == Store::AiohttpRedis || store == Store::AiohttpMemcached {
        let id = cookie.as_str();
        assert_eq!(
            read.json()["identity"],
            id,
            "Python finds it under the cookie's id"
        );
        assert_eq!(id.len(), 32, "a uuid4 in hex: {id}");
    }
}

async fn a_user_alternating_between_the_apps_keeps_one_session_and_every_key(store: Store) {
    let apps = Apps::start(store, Some(3600)).await;
    let py = |cookie: String, method: Method, path: &'static str, body: Option<&'static str>| {
        let apps = &apps;
        async move {
            let reply = apps.python.send(method, path, Some(&cookie), body).await;
            (next_cookie(&reply, &cookie), reply)
        }
    };
    let first = apps
        .python
        .send(
            Method::PATCH,
            "/session",
            None,
            Some(r#"{"from_python": 1}"#),
        )
        .await;
    let mut cookie = first.new_cookie();
    let mut cookies = vec![cookie.clone()];
    for step in 0..3 {
        let reply = apps
            .rust
            .send(Method::POST, "/session/incr?key=n", Some(&cookie), None)
            .await;
        cookie = next_cookie(&reply, &cookie);
        cookies.push(cookie.clone());
        let body = if step == 1 {
            r#"{"from_rust": "yes"}"#
        } else {
            r#"{"step": 1}"#
        };
        let reply = apps.rust.patch(Some(&cookie), body).await;
        cookie = next_cookie(&reply, &cookie);
        cookies.push(cookie.clone());
        let (next, _) = py(cookie.clone(), Method::POST, "/session/incr?key=n", None).await;
        cookie = next;
        cookies.push(cookie.clone());
    }
    let (next, _) = py(
        cookie.clone(),
        Method::PATCH,
        "/session",
        Some(r#"{"step": null}"#),
    )
    .await;
    cookie = next;
    let expected = json!({"from_python": 1, "from_rust": "yes", "n": 6});
    let rust_view = apps.rust.get("/session", Some(&cookie)).await;
    let python_view = apps
        .python
        .send(Method::GET, "/session", Some(&cookie), None)
        .await;
    assert_eq!(data(&rust_view), expected);
    assert_eq!(data(&python_view), expected);
    if store == Store::AiohttpRedis || store == Store::AiohttpMemcached {
        assert!(
            cookies.iter().all(|c| *c == cookies[0]),
            "one session id throughout: {cookies:?}"
        );
    }
}

async fn expiry_agrees_to_the_second(store: Store) {
    let apps = Apps::start(store, Some(60)).await;
    // Written by Python, by Rust, and one read by Rust at the limit.
    let by_python = apps
        .python
        .send(Method::PATCH, "/session", None, Some(r#"{"a": 1}"#))
        .await
        .new_cookie();
    let read_by_rust = apps
        .python
        .send(Method::PATCH, "/session", None, Some(r#"{"c": 3}"#))
        .await
        .new_cookie();
    let by_rust = apps.rust.patch(None, r#"{"b": 2}"#).await.new_cookie();
    let python_data = |cookie: String| {
        let apps = &apps;
        async move {
            data(
                &apps
                    .python
                    .send(Method::GET, "/session", Some(&cookie), None)
                    .await,
            )
        }
    };

    apps.set_time(START + 60).await;
    assert_eq!(python_data(by_python.clone()).await, json!({"a": 1}));
    assert_eq!(python_data(by_rust.clone()).await, json!({"b": 2}));
    assert_eq!(
        data(&apps.rust.get("/session", Some(&read_by_rust)).await),
        json!({"c": 3}),
        "alive at exactly max_age on the Rust side too"
    );

    apps.set_time(START + 61).await;
    for cookie in [&by_python, &by_rust] {
        assert_eq!(python_data(cookie.clone()).await, json!({}), "Python: gone");
        assert_eq!(
            data(&apps.rust.get("/session", Some(cookie)).await),
            json!({}),
            "Rust: gone"
        );
    }
}

/// `text` with the character at its middle replaced by another of the same
/// alphabet (a hex digit stays a hex digit).
fn tampered(text: &str) -> String {
    let quoted = text.starts_with('"');
    let inner = text.trim_matches('"');
    let middle = inner.len() / 2;
    let old = inner.as_bytes()[middle];
    let new = if old == b'a' { 'b' } else { 'a' };
    let changed = format!("{}{new}{}", &inner[..middle], &inner[middle + 1..]);
    if quoted {
        format!("\"{changed}\"")
    } else {
        changed
    }
}

async fn a_tampered_cookie_is_refused_on_both_sides(store: Store) {
    let apps = Apps::start(store, Some(3600)).await;
    let by_python = apps
        .python
        .send(Method::PATCH, "/session", None, Some(r#"{"a": 1}"#))
        .await
        .new_cookie();
    let by_rust = apps.rust.patch(None, r#"{"b": 2}"#).await.new_cookie();
    for cookie in [tampered(&by_python), tampered(&by_rust)] {
        let rust = apps.rust.get("/session", Some(&cookie)).await;
        assert_eq!(
            (data(&rust), &rust.json()["new"]),
            (json!({}), &json!(true))
        );
        let python = apps
            .python
            .send(Method::GET, "/session", Some(&cookie), None)
            .await;
        assert_eq!(
            (data(&python), &python.json()["new"]),
            (json!({}), &json!(true))
        );
    }
}

/// The apps, the Rust one with `PATCH /hold`: it loads the session, waits
/// at the barrier twice (loaded; go on), then applies its body's changes.
async fn holding_apps(store: Store) -> (Apps, Arc<Barrier>) {
    let barrier = Arc::new(Barrier::new(2));
    let held = barrier.clone();
    let hold = move |session: Session, body: axum::body::Bytes| {
        let barrier = held.clone();
        async move {
            barrier.wait().await;
            barrier.wait().await;
            let changes: serde_json::Map<String, Value> =
                serde_json::from_slice(&body).expect("a JSON object");
            for (key, value) in changes {
                session.insert_value(&key, value);
            }
            "saved"
        }
    };
    let apps = Apps::start_with(store, Some(3600), |routes| {
        routes.route("/hold", patch(hold))
    })
    .await;
    (apps, barrier)
}

/// Runs `PATCH /hold` with `cookie` and `body`, and `meanwhile` once the
/// Rust app has loaded the session and before it saves.
async fn while_rust_holds(
    apps: &Apps,
    barrier: &Barrier,
    cookie: &str,
    body: &'static str,
    meanwhile: impl std::future::Future<Output = ()>,
) {
    let held = apps
        .rust
        .send(Method::PATCH, "/hold", Some(cookie), Some(body));
    let other = async {
        barrier.wait().await;
        meanwhile.await;
        barrier.wait().await;
    };
    let (reply, ()) = tokio::join!(held, other);
    assert_eq!(reply.status, 200, "{}", reply.body);
}

async fn a_python_write_during_a_rust_request_is_merged_not_lost(store: Store) {
    let (apps, barrier) = holding_apps(store).await;
    let cookie = apps
        .python
        .send(Method::PATCH, "/session", None, Some(r#"{"start": 1}"#))
        .await
        .new_cookie();
    while_rust_holds(&apps, &barrier, &cookie, r#"{"rust": 2}"#, async {
        let reply = apps
            .python
            .send(
                Method::PATCH,
                "/session",
                Some(&cookie),
                Some(r#"{"python": 3}"#),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    })
    .await;
    let expected = json!({"start": 1, "python": 3, "rust": 2});
    let python = apps
        .python
        .send(Method::GET, "/session", Some(&cookie), None)
        .await;
    assert_eq!(data(&python), expected);
    assert_eq!(
        data(&apps.rust.get("/session", Some(&cookie)).await),
        expected
    );
}

async fn a_session_python_invalidates_during_a_rust_request_stays_ended(store: Store) {
    let (apps, barrier) = holding_apps(store).await;
    let cookie = apps
        .python
        .send(Method::PATCH, "/session", None, Some(r#"{"user": "ann"}"#))
        .await
        .new_cookie();
    while_rust_holds(&apps, &barrier, &cookie, r#"{"late": true}"#, async {
        let reply = apps
            .python
            .send(Method::POST, "/session/invalidate", Some(&cookie), None)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    })
    .await;
    let python = apps
        .python
        .send(Method::GET, "/session", Some(&cookie), None)
        .await;
    assert_eq!(
        (data(&python), &python.json()["new"]),
        (json!({}), &json!(true))
    );
    let rust = apps.rust.get("/session", Some(&cookie)).await;
    assert_eq!(
        (data(&rust), &rust.json()["new"]),
        (json!({}), &json!(true))
    );
}

/// The Rust app on `Upgrade` over `storage`, sharing the Python app's
/// cookie name, beside the Python app on `store`.
async fn upgrading_apps(store: Store, storage: AnyStorage) -> Apps {
    let python_side = Apps::start(store, Some(3600)).await;
    let mut settings = settings(store);
    settings.cookie_name = Some(COOKIE.to_owned());
    settings.max_age = Some(3600);
    let rust = TestApp::conformance_on(settings, storage, |routes| routes).await;
    Apps {
        rust,
        python: python_side.python,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_opens_fernet_cookies_and_seals_native_ones() {
    let key = EncryptionKey::from_bytes(SECRET).unwrap();
    let storage = AnyStorage::new(aiohttp::Upgrade::new(
        typed_sessions::EncryptedCookieStorage::new(key.clone()),
        aiohttp::FernetCookieStorage::new(key),
    ));
    let apps = upgrading_apps(Store::AiohttpEncrypted, storage).await;
    let fernet = apps
        .python
        .send(Method::PATCH, "/session", None, Some(r#"{"user": "ann"}"#))
        .await
        .new_cookie();
    let read = apps.rust.get("/session", Some(&fernet)).await;
    assert_eq!(data(&read), json!({"user": "ann"}));
    let native = apps
        .rust
        .patch(Some(&fernet), r#"{"n": 1}"#)
        .await
        .new_cookie();
    assert!(!native.trim_matches('"').starts_with("gAAAAA"), "{native}");
    assert_eq!(
        data(&apps.rust.get("/session", Some(&native)).await),
        json!({"user": "ann", "n": 1})
    );
    let python = apps
        .python
        .send(Method::GET, "/session", Some(&native), None)
        .await;
    assert_eq!(data(&python), json!({}), "the native cookie is not Fernet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_moves_a_redis_record_to_a_native_id_on_first_read() {
    let native = typed_sessions::RedisStorage::connect(&shared_redis().url())
        .await
        .unwrap();
    let old = aiohttp::AiohttpRedisStorage::from_connection(native.connection().clone());
    let storage = AnyStorage::new(aiohttp::Upgrade::new(native, old));
    let apps = upgrading_apps(Store::AiohttpRedis, storage).await;
    let old_cookie = apps
        .python
        .send(Method::PATCH, "/session", None, Some(r#"{"user": "ann"}"#))
        .await
        .new_cookie();
    let read = apps.rust.get("/session", Some(&old_cookie)).await;
    assert_eq!(data(&read), json!({"user": "ann"}));
    let new_cookie = read.new_cookie();
    assert_eq!(new_cookie.len(), 43, "a native id: {new_cookie}");
    let exists = shared_redis().command(&format!("EXISTS {COOKIE}_{old_cookie}"));
    assert!(
        exists.starts_with(":0"),
        "the aiohttp_session record is gone: {exists}"
    );
    assert_eq!(
        data(&apps.rust.get("/session", Some(&new_cookie)).await),
        json!({"user": "ann"})
    );
    let stale = apps.rust.get("/session", Some(&old_cookie)).await;
    assert_eq!(data(&stale), json!({}), "the old id names nothing any more");
}

/// The conformance app sharing aiohttp_session's records in Redis under
/// its cookie name, on `storage`.
async fn rust_app_on(storage: AnyStorage) -> TestApp {
    let mut settings = settings(Store::AiohttpRedis);
    settings.cookie_name = Some(COOKIE.to_owned());
    TestApp::conformance_on(settings, storage, |routes| {
        routes.route("/slow-write", axum::routing::post(slow_write))
    })
    .await
}

/// Loads the session, waits, then writes to it: a request that loaded the
/// session before a revocation and saves after it.
async fn slow_write(session: Session) {
    let _ = session.user();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    session.insert("late", true).expect("a JSON value");
}

/// "Log out everywhere" in the middle of a move: sessions bound while the
/// Rust service wrote aiohttp_session's records end wherever they are when
/// the user is revoked through `Upgrade`: one already moved to a native id,
/// one still in the old format, and one whose move was in flight (loaded
/// from the old store before the revocation, written to the new one after
/// it). Another user's session lives, and so does a login after the
/// revocation. Listings show the sessions that moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_revokes_a_user_in_both_stores_even_mid_move() {
    let native = typed_sessions::RedisStorage::connect(&shared_redis().url())
        .await
        .unwrap();
    let old = aiohttp::AiohttpRedisStorage::from_connection(native.connection().clone());
    let sharing = rust_app_on(AnyStorage::new(old.clone())).await;
    let ann = format!(
        "ann-{}",
        typed_sessions::storage::SessionId::generate().as_str()
    );
    let moved_early = sharing.login(&ann).await;
    let still_old = sharing.login(&ann).await;
    let in_flight = sharing.login(&ann).await;
    let bobs = sharing.login("bob").await;

    let upgrading = rust_app_on(AnyStorage::new(aiohttp::Upgrade::new(native, old))).await;
    let moved = upgrading.get("/session", Some(&moved_early)).await;
    assert_eq!(data(&moved), json!({"cart": [1]}));
    let moved = moved.new_cookie();
    let listed = upgrading.get(&format!("/users/{ann}/sessions"), None).await;
    assert_eq!(
        listed.json()["sessions"].as_array().map(Vec::len),
        Some(1),
        "the moved session is listed: {}",
        listed.body
    );

    let (revoked, late) = upgrading
        .revoke_during("/slow-write", &in_flight, &ann)
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.json(), json!({"revoked": null}));
    assert_eq!(late.status, 200, "{}", late.body);
    let late_cookie = late.cookie_value();

    let mut ended = vec![
        ("moved before", moved),
        ("old id of the moved one", moved_early),
        ("still in the old store", still_old),
        ("loaded before, written after", in_flight),
    ];
    ended.extend(late_cookie.map(|cookie| ("the in-flight move's new id", cookie)));
    for (what, cookie) in ended {
        let view = upgrading.get("/session", Some(&cookie)).await.json();
        assert_eq!(view["new"], true, "the session {what} still opens: {view}");
    }
    assert_eq!(
        data(&upgrading.get("/session", Some(&bobs)).await),
        json!({"cart": [1]})
    );
    let after = upgrading.login(&ann).await;
    assert_eq!(
        data(&upgrading.get("/session", Some(&after)).await),
        json!({"cart": [1]})
    );
    let listed = upgrading.get(&format!("/users/{ann}/sessions"), None).await;
    assert_eq!(
        listed.json()["sessions"].as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.body
    );
}

/// aiohttp_session's Memcached rule: a max age over 30 days is sent as an
/// absolute time, which both sides compute from the real clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_records_with_a_max_age_over_thirty_days_live_on_both_sides() {
    let forty_days = 40 * 86_400;
    let apps = Apps::start(Store::AiohttpMemcached, Some(forty_days)).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    apps.set_time(now).await;
    let by_python = apps
        .python
        .send(Method::PATCH, "/session", None, Some(r#"{"a": 1}"#))
        .await
        .new_cookie();
    let by_rust = apps.rust.patch(None, r#"{"b": 2}"#).await.new_cookie();
    apps.set_time(now + forty_days - 1).await;
    assert_eq!(
        data(&apps.rust.get("/session", Some(&by_python)).await),
        json!({"a": 1})
    );
    let python = apps
        .python
        .send(Method::GET, "/session", Some(&by_rust), None)
        .await;
    assert_eq!(data(&python), json!({"b": 2}));
}
