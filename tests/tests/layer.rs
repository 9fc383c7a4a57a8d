//! The layer's contract with handlers and storages, whatever the storage:
//! laziness, one load per request, failures, and the conformance binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use serde_json::json;
use session_examples::conformance::{Settings, Store};
use session_tests::{TestApp, conformance_binary};
use typed_sessions::{
    MemoryStorage, Session, StorageError,
    storage::{
        AnyStorage, Changes, Loaded, ServerStorage, SessionId, SessionRecord, StorageContext,
    },
};

/// A real memory store behind a switch that makes it fail like a store that
/// went down, and a counter of the calls that reached it.
#[derive(Clone, Default)]
struct Switchable {
    inner: MemoryStorage,
    down: Arc<AtomicBool>,
    writes_down: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl Switchable {
    fn check(&self, write: bool) -> Result<(), StorageError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) || (write && self.writes_down.load(Ordering::SeqCst)) {
            return Err(StorageError::unavailable("connection refused"));
        }
        Ok(())
    }
}

impl ServerStorage for Switchable {
    async fn load(
        &self,
        id: &SessionId,
        cx: &StorageContext<'_>,
    ) -> Result<Option<Loaded>, StorageError> {
        self.check(false)?;
        self.inner.load(id, cx).await
    }

    async fn create(
        &self,
        record: &SessionRecord,
        cx: &StorageContext<'_>,
    ) -> Result<SessionId, StorageError> {
        self.check(true)?;
        self.inner.create(record, cx).await
    }

    async fn update(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        changes: &Changes,
        cx: &StorageContext<'_>,
    ) -> Result<bool, StorageError> {
        self.check(true)?;
        self.inner.update(id, record, changes, cx).await
    }

    async fn delete(&self, id: &SessionId, cx: &StorageContext<'_>) -> Result<bool, StorageError> {
        self.check(true)?;
        self.inner.delete(id, cx).await
    }
}

async fn twice(first: Session, second: Session) -> String {
    first.insert("a", 1).unwrap();
    second.get::<u64>("a").unwrap().to_string()
}

async fn app_on(storage: &Switchable) -> TestApp {
    TestApp::conformance_on(
        Settings::new(Store::Memory),
        AnyStorage::new(storage.clone()),
        |routes| routes.route("/twice", get(twice)),
    )
    .await
}

#[tokio::test]
async fn an_untouched_request_costs_no_storage_call() {
    let storage = Switchable::default();
    let app = app_on(&storage).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    let before = storage.calls.load(Ordering::SeqCst);
    let reply = app.get("/untouched", Some(&cookie)).await;
    assert_eq!(reply.body, "ok");
    assert_eq!(storage.calls.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn several_extractions_share_one_load_and_one_map() {
    let storage = Switchable::default();
    let app = app_on(&storage).await;
    let cookie = app.session_with(r#"{"a": 0}"#).await;
    let before = storage.calls.load(Ordering::SeqCst);
    let reply = app.get("/twice", Some(&cookie)).await;
    assert_eq!(
        reply.body, "1",
        "a write through one extractor is seen by the other"
    );
    assert_eq!(reply.set_cookies().len(), 1);
    assert_eq!(
        storage.calls.load(Ordering::SeqCst) - before,
        2,
        "one load, one save"
    );
}

#[tokio::test]
async fn a_read_only_request_costs_one_load() {
    let storage = Switchable::default();
    let app = app_on(&storage).await;
    let cookie = app.session_with(r#"{"a": 0}"#).await;
    let before = storage.calls.load(Ordering::SeqCst);
    app.get("/session", Some(&cookie)).await;
    assert_eq!(storage.calls.load(Ordering::SeqCst) - before, 1);
    app.get("/session", None).await;
    assert_eq!(
        storage.calls.load(Ordering::SeqCst) - before,
        1,
        "no cookie, nothing to look up"
    );
}

#[tokio::test]
async fn a_store_that_is_down_answers_503_and_the_app_recovers() {
    let storage = Switchable::default();
    let app = app_on(&storage).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;

    storage.down.store(true, Ordering::SeqCst);
    for reply in [
        app.get("/session", Some(&cookie)).await,
        app.patch(Some(&cookie), r#"{"a": 2}"#).await,
        app.patch(None, r#"{"a": 2}"#).await,
    ] {
        assert_eq!(reply.status, 503);
        assert!(reply.set_cookies().is_empty());
        let error = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(
            !error.contains("connection refused"),
            "no internals in the body: {error}"
        );
    }
    assert_eq!(app.get("/untouched", Some(&cookie)).await.status, 200);

    storage.down.store(false, Ordering::SeqCst);
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"a": 1})
    );
}

#[tokio::test]
async fn a_failed_save_answers_503_sets_no_cookie_and_keeps_the_old_session() {
    let storage = Switchable::default();
    let app = app_on(&storage).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;

    storage.writes_down.store(true, Ordering::SeqCst);
    for reply in [
        app.patch(Some(&cookie), r#"{"a": 2}"#).await,
        app.post("/session/login", Some(&cookie), r#"{"user": "ann"}"#)
            .await,
        app.post("/session/invalidate", Some(&cookie), "").await,
    ] {
        assert_eq!(reply.status, 503);
        assert!(reply.set_cookies().is_empty());
        assert!(reply.varies_on_cookie());
    }
    storage.writes_down.store(false, Ordering::SeqCst);
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"a": 1})
    );
    assert_eq!(storage.inner.len(), 1, "nothing was written half-way");
}

#[tokio::test]
async fn extracting_a_session_without_the_layer_says_how_to_fix_it() {
    let router = Router::new().route("/", get(|_session: Session| async { "unreachable" }));
    let app = TestApp::serve(
        router,
        "session".into(),
        typed_sessions::clock::ManualClock::new(0),
        AnyStorage::new(MemoryStorage::new()),
    )
    .await;
    let reply = app.get("/", None).await;
    assert_eq!(reply.status, 500);
    assert!(reply.body.contains("add `SessionLayer`"), "{}", reply.body);
}

#[tokio::test]
async fn the_conformance_binary_announces_its_address_and_serves() {
    let mut child = Command::new(conformance_binary())
        .env("SESSION_STORE", "memory")
        .env("CONFORMANCE_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the conformance app");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .expect(&line)
        .to_owned();
    let client = reqwest::Client::new();
    let reply = client
        .patch(format!("{base}/session"))
        .body(r#"{"a": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert!(reply.headers().contains_key("set-cookie"));
    let untouched = client
        .get(format!("{base}/untouched"))
        .send()
        .await
        .unwrap();
    assert_eq!(untouched.text().await.unwrap(), "ok");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn the_conformance_binary_refuses_bad_configuration_with_one_line() {
    let unused = session_tests::servers::free_port(0);
    let nowhere_redis = format!("redis://127.0.0.1:{unused}/0");
    let nowhere_memcached = format!("127.0.0.1:{unused}");
    let nowhere_postgres = format!("postgres://postgres@127.0.0.1:{unused}/postgres");
    let nowhere_mysql = format!("mysql://root@127.0.0.1:{unused}/sessions");
    for (store, variable, value) in [
        ("encrypted", "SESSION_STORE", "cassandra"),
        ("encrypted", "SESSION_SECRET", "too-short"),
        ("encrypted", "SESSION_COOKIE_SAMESITE", "sometimes"),
        ("encrypted", "SESSION_MAX_AGE", "soon"),
        ("redis", "REDIS_URL", nowhere_redis.as_str()),
        ("redis", "REDIS_URL", "not a url"),
        ("memcached", "MEMCACHED_URL", nowhere_memcached.as_str()),
        ("postgres", "DATABASE_URL", "not a url"),
        ("postgres", "DATABASE_URL", nowhere_postgres.as_str()),
        ("mysql", "DATABASE_URL", "not a url"),
        ("mysql", "DATABASE_URL", nowhere_mysql.as_str()),
    ] {
        let output = Command::new(conformance_binary())
            .env("CONFORMANCE_ADDR", "127.0.0.1:0")
            .env("SESSION_STORE", store)
            .env(variable, value)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{variable}={value} accepted");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(variable), "{stderr}");
        assert!(output.stdout.is_empty());
    }
}

/// A store's password never shows: not when Redis refuses it (the app exits
/// with one line that names `REDIS_URL` and shows the URL with `***`), not
/// when the database is unreachable, and not in anything the app prints
/// while it serves with every log on.
#[tokio::test]
async fn the_conformance_binary_never_prints_a_password() {
    let redis = session_tests::servers::RedisServer::start();
    let password = "s3cret-Pw-4711";
    let set =
        session_tests::servers::ask_all(redis.port, &format!("CONFIG SET requirepass {password}"));
    assert!(set.starts_with("+OK"), "{set}");
    let unused = session_tests::servers::free_port(0);
    let mariadb = session_tests::servers::shared_mariadb();
    for (store, variable, value, secret) in [
        (
            "redis",
            "REDIS_URL",
            format!("redis://default:wrong-Pw-0815@127.0.0.1:{}/0", redis.port),
            "wrong-Pw-0815",
        ),
        (
            "postgres",
            "DATABASE_URL",
            format!("postgres://app:pg-Pw-0816@127.0.0.1:{unused}/app"),
            "pg-Pw-0816",
        ),
        (
            "postgres",
            "DATABASE_URL",
            format!("postgres://app@127.0.0.1:{unused}/app?password=pg-Pw-0817"),
            "pg-Pw-0817",
        ),
        (
            // A real server refusing the credentials.
            "mysql",
            "DATABASE_URL",
            format!("mysql://app:my-Pw-0818@127.0.0.1:{}/sessions", mariadb.port),
            "my-Pw-0818",
        ),
    ] {
        let output = Command::new(conformance_binary())
            .env("CONFORMANCE_ADDR", "127.0.0.1:0")
            .env("SESSION_STORE", store)
            .env(variable, &value)
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{variable} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            !stderr.contains(secret) && !stdout.contains(secret),
            "the password shows: {stderr}{stdout}"
        );
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.contains(variable), "{stderr}");
        if store == "redis" {
            assert!(last.contains("default:***@"), "{last}");
        }
    }

    // The right password: the app serves, and nothing it prints shows it.
    let mut child = Command::new(conformance_binary())
        .env("SESSION_STORE", "redis")
        .env(
            "REDIS_URL",
            format!("redis://default:{password}@127.0.0.1:{}/0", redis.port),
        )
        .env("CONFORMANCE_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the conformance app");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let client = reqwest::Client::new();
    let reply = client
        .patch(format!("{base}/session"))
        .body(r#"{"a": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    child.kill().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    child.wait().unwrap();
    assert!(!stderr.is_empty(), "the logs were on");
    assert!(
        !format!("{line}{rest}{stderr}").contains(password),
        "the password shows"
    );
}

/// A Redis password can come from its own setting rather than the URL, and
/// a refused one shows in no error or `Debug`.
#[tokio::test]
async fn a_redis_password_from_its_own_setting_authenticates_and_never_shows() {
    use typed_sessions::storage::RedisOptions;

    let redis = session_tests::servers::RedisServer::start();
    let password = "own-Setting-Pw-99";
    let set =
        session_tests::servers::ask_all(redis.port, &format!("CONFIG SET requirepass {password}"));
    assert!(set.starts_with("+OK"), "{set}");
    let url = format!("redis://127.0.0.1:{}/0", redis.port);

    let options = RedisOptions::standalone(&url).with_password("not-It-42");
    assert!(!format!("{options:?}").contains("not-It-42"), "{options:?}");
    let refused = typed_sessions::RedisStorage::connect(options)
        .await
        .expect_err("a wrong password is refused");
    let shown = format!(
        "{refused} {refused:?} {}",
        typed_sessions_error_chain(&refused)
    );
    assert!(!shown.contains("not-It-42"), "{shown}");
    assert!(shown.contains("auth") || shown.contains("Auth"), "{shown}");

    let storage = typed_sessions::RedisStorage::connect(
        RedisOptions::standalone(&url).with_password(password),
    )
    .await
    .expect("the password from its own setting authenticates");
    assert!(!format!("{storage:?}").contains(password));
    let app = TestApp::conformance_on(
        Settings::new(Store::Redis),
        typed_sessions::storage::AnyStorage::new(storage),
        |routes| routes,
    )
    .await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"a": 1})
    );
}

fn typed_sessions_error_chain(error: &dyn std::error::Error) -> String {
    session_examples::conformance::typed_sessions_error_chain(error)
}
