//! The harness of the integration tests: serves an app on a loopback port
//! and speaks plain HTTP to it, one explicit cookie at a time (no cookie
//! jar, so every test says which cookie it replays).

pub mod counters;
pub mod python;
pub mod servers;
pub mod soak;
pub mod sql;

use std::net::SocketAddr;

use axum::Router;
use reqwest::header::{HeaderMap, SET_COOKIE};
use reqwest::{Method, redirect};
use serde_json::Value;
use session_examples::conformance::{self, Settings};
use tokio::task::JoinHandle;
use typed_sessions::{clock::ManualClock, storage::AnyStorage};

pub use session_examples::conformance::Store;

/// Runs each named `async fn case(store: Store)` of the calling module as a
/// test against every storage, in one module per storage; `redis_cache` is
/// Redis with its local cache on (`RedisOptions::with_cache`).
#[macro_export]
macro_rules! for_every_storage {
    ($($case:ident),* $(,)?) => {
        mod simple {
            $(#[tokio::test] async fn $case() { $crate::use_redis_cache(false); super::$case($crate::Store::Simple).await })*
        }
        mod encrypted {
            $(#[tokio::test] async fn $case() { $crate::use_redis_cache(false); super::$case($crate::Store::Encrypted).await })*
        }
        mod memory {
            $(#[tokio::test] async fn $case() { $crate::use_redis_cache(false); super::$case($crate::Store::Memory).await })*
        }
        mod redis {
            $(#[tokio::test] async fn $case() { $crate::use_redis_cache(false); super::$case($crate::Store::Redis).await })*
        }
        mod redis_cache {
            $(#[tokio::test] async fn $case() { $crate::use_redis_cache(true); super::$case($crate::Store::Redis).await })*
        }
        mod redis_cluster {
            $(#[tokio::test] async fn $case() { $crate::use_redis_cache(false); super::$case($crate::Store::RedisCluster).await })*
        }
        mod redis_sentinel {
            $(#[tokio::test] async fn $case() { $crate::use_redis_cache(false); super::$case($crate::Store::RedisSentinel).await })*
        }
        mod memcached {
            $(#[tokio::test] async fn $case() { $crate::use_redis_cache(false); super::$case($crate::Store::Memcached).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $case() { $crate::use_redis_cache(false); super::$case($crate::Store::Postgres).await })*
        }
        mod mysql {
            $(#[tokio::test] async fn $case() { $crate::use_redis_cache(false); super::$case($crate::Store::MySql).await })*
        }
        mod sqlite {
            $(#[tokio::test] async fn $case() { $crate::use_redis_cache(false); super::$case($crate::Store::Sqlite).await })*
        }
    };
}

/// The time every test app starts at: Tue, 14 Nov 2023 22:13:20 GMT.
pub const START: u64 = 1_700_000_000;

/// An app served on a loopback port for one test.
pub struct TestApp {
    base: String,
    client: reqwest::Client,
    cookie_name: String,
    /// The clock the app's session layer reads; advance it to expire sessions.
    pub clock: ManualClock,
    /// The storage the app runs on, shared with the test.
    pub storage: AnyStorage,
    server: JoinHandle<()>,
}

impl TestApp {
    /// The conformance app on `settings`, with a manual clock at [`START`].
    pub async fn conformance(settings: Settings) -> Self {
        Self::conformance_with(settings, |routes| routes).await
    }

    /// The conformance app with extra routes added by `extend`.
    pub async fn conformance_with(
        settings: Settings,
        extend: impl FnOnce(Router) -> Router,
    ) -> Self {
        let storage = settings.storage().await.expect("the test storage connects");
        Self::conformance_on(settings, storage, extend).await
    }

    /// The conformance app on a storage the test made (and can inspect).
    pub async fn conformance_on(
        settings: Settings,
        storage: AnyStorage,
        extend: impl FnOnce(Router) -> Router,
    ) -> Self {
        let clock = ManualClock::new(START);
        let settings = match settings.revocations {
            Some(_) => settings,
            None => settings
                .connect_revocations()
                .await
                .expect("the revocation state connects"),
        };
        let layer = settings
            .layer_with(storage.clone(), clock.clone())
            .expect("valid test configuration");
        let admin = settings
            .admin_layer_with(storage.clone(), clock.clone())
            .expect("valid test configuration");
        let cookie_name = layer.cookie_name().to_owned();
        let router = extend(conformance::routes()).layer(admin).layer(layer);
        Self::serve(router, cookie_name, clock, storage).await
    }

    /// Serves any router; `clock` and `storage` are what its layer uses.
    pub async fn serve(
        router: Router,
        cookie_name: String,
        clock: ManualClock,
        storage: AnyStorage,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr: SocketAddr = listener.local_addr().expect("bound address");
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("test server runs");
        });
        let client = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .build()
            .expect("http client");
        Self {
            base: format!("http://{addr}"),
            client,
            cookie_name,
            clock,
            storage,
            server,
        }
    }

    /// The app's address, `http://ADDR`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The name of the session cookie.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// Sends a request, with `cookie` as the session cookie's value and
    /// `body` as its body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header("cookie", format!("{}={cookie}", self.cookie_name));
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        self.receive(request).await
    }

    /// Sends a request with these extra headers (name and value pairs) and
    /// no cookie.
    pub async fn send_with_headers(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        self.receive(request).await
    }

    /// Sends a request carrying the `cookies` (name and value pairs, in
    /// order); the reply's cookie helpers read the Set-Cookie of
    /// `reply_cookie`.
    pub async fn send_with_cookies(
        &self,
        method: Method,
        path: &str,
        cookies: &[(&str, &str)],
        body: Option<&str>,
        reply_cookie: &str,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if !cookies.is_empty() {
            let header: Vec<String> = cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            request = request.header("cookie", header.join("; "));
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let mut reply = self.receive(request).await;
        reply_cookie.clone_into(&mut reply.cookie_name);
        reply
    }

    /// `GET path` with `header` as the whole `Cookie` header, byte for byte
    /// (several cookies, odd spacing, bytes outside ASCII).
    pub async fn get_with_cookie_header(&self, path: &str, header: &[u8]) -> Reply {
        let header = reqwest::header::HeaderValue::from_bytes(header)
            .expect("a header value (no control characters)");
        let request = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", header);
        self.receive(request).await
    }

    async fn receive(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("the test server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.expect("a body");
        Reply {
            status,
            headers,
            body,
            cookie_name: self.cookie_name.clone(),
        }
    }

    /// `GET path` with the session cookie `cookie`.
    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        self.send(Method::GET, path, cookie, None).await
    }

    /// `PATCH /session` with `body`.
    pub async fn patch(&self, cookie: Option<&str>, body: &str) -> Reply {
        self.send(Method::PATCH, "/session", cookie, Some(body))
            .await
    }

    /// `POST path` with `body`.
    pub async fn post(&self, path: &str, cookie: Option<&str>, body: &str) -> Reply {
        self.send(Method::POST, path, cookie, Some(body)).await
    }

    /// Starts a session holding `data` and returns its cookie value.
    pub async fn session_with(&self, data: &str) -> String {
        let reply = self.patch(None, data).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.new_cookie()
    }

    /// Sends `POST slow_path` with `cookie` (a route of the test's that
    /// loads the session, waits, then writes it) and, 100 ms into it,
    /// `POST /users/{user}/revoke`: a request that loaded the session
    /// before a revocation and saves after it. The revocation's reply, then
    /// the slow request's.
    pub async fn revoke_during(&self, slow_path: &str, cookie: &str, user: &str) -> (Reply, Reply) {
        let revoke = async {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            self.post(&format!("/users/{user}/revoke"), None, "").await
        };
        let (slow, revoked) = tokio::join!(self.post(slow_path, Some(cookie), ""), revoke);
        (revoked, slow)
    }

    /// Signs `user` in: a session holding `{"cart": [1]}`, then bound to
    /// the user (`POST /session/bind`); the cookie value of the bound
    /// session.
    pub async fn login(&self, user: &str) -> String {
        let cookie = self.session_with(r#"{"cart": [1]}"#).await;
        let reply = self
            .post(
                "/session/bind",
                Some(&cookie),
                &serde_json::json!({ "user": user }).to_string(),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.new_cookie()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub body: String,
    cookie_name: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }

    /// The session view's `data`.
    pub fn data(&self) -> Value {
        self.json()["data"].clone()
    }

    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|value| value.to_str().expect("ASCII Set-Cookie").to_owned())
            .collect()
    }

    /// The one `Set-Cookie` header of the session cookie, if any; more than
    /// one fails the test.
    pub fn session_set_cookie(&self) -> Option<String> {
        let prefix = format!("{}=", self.cookie_name);
        let mut matching: Vec<String> = self
            .set_cookies()
            .into_iter()
            .filter(|header| header.starts_with(&prefix))
            .collect();
        assert!(
            matching.len() <= 1,
            "more than one session Set-Cookie: {matching:?}"
        );
        matching.pop()
    }

    /// The value of the session cookie this response sets; fails the test
    /// if it sets none.
    pub fn new_cookie(&self) -> String {
        self.cookie_value().unwrap_or_else(|| {
            panic!(
                "no session cookie set; status {}, body {}",
                self.status, self.body
            )
        })
    }

    /// The value of the session cookie this response sets, if any.
    pub fn cookie_value(&self) -> Option<String> {
        let header = self.session_set_cookie()?;
        let pair = header.split(';').next().expect("a name=value pair");
        Some(pair.split_once('=').expect("name=value").1.to_owned())
    }

    /// The attributes of the session cookie this response sets.
    pub fn cookie_attributes(&self) -> Vec<String> {
        self.session_set_cookie()
            .expect("a session cookie")
            .split(';')
            .skip(1)
            .map(|attribute| attribute.trim().to_owned())
            .collect()
    }

    /// Whether the response has `Vary: Cookie`.
    pub fn varies_on_cookie(&self) -> bool {
        self.headers.get_all("vary").iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("cookie"))
        })
    }
}

thread_local! {
    /// Whether this test's Redis settings turn the local cache on.
    static REDIS_CACHE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes [`settings`] turn Redis' local cache on (or off) for the rest of
/// this test (its thread: `#[tokio::test]` runs the test on it).
pub fn use_redis_cache(on: bool) {
    REDIS_CACHE.with(|cache| cache.set(on));
}

/// Settings for `store` as the tests use them: server-side stores point at
/// the servers this test binary shares.
pub fn settings(store: Store) -> Settings {
    let mut settings = Settings::new(store);
    settings.redis_cache = REDIS_CACHE.with(std::cell::Cell::get)
        && matches!(
            store,
            Store::Redis | Store::RedisCluster | Store::RedisSentinel
        );
    match store {
        Store::Redis => settings.redis_url = servers::shared_redis().url(),
        Store::RedisCluster => settings.redis_url = servers::shared_redis_cluster().url(),
        Store::RedisSentinel => settings.redis_url = servers::shared_redis_sentinels().urls(),
        Store::Memcached => {
            settings.memcached_servers = servers::shared_memcached()
                .iter()
                .map(|m| m.addr())
                .collect();
        }
        Store::AiohttpRedis => settings.redis_url = servers::shared_redis().url(),
        Store::AiohttpMemcached => {
            settings.memcached_servers = vec![servers::shared_memcached()[0].addr()];
        }
        Store::AiohttpEncrypted | Store::AiohttpNacl => {}
        Store::Postgres => settings.database_url = servers::shared_postgres().url(),
        Store::MySql => settings.database_url = servers::shared_mariadb().url(),
        Store::Sqlite => settings.database_url = servers::shared_sqlite().to_owned(),
        Store::Simple | Store::Encrypted | Store::Memory => {}
    }
    settings
}

/// The store key of the record a session cookie names, as documented:
/// the prefix and the url-safe base64 of SHA-256 of the id.
pub fn record_key(prefix: &str, cookie: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(cookie.as_bytes());
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

/// Whether `store` keeps sessions on the server.
pub fn is_server_side(store: Store) -> bool {
    !matches!(
        store,
        Store::Simple | Store::Encrypted | Store::AiohttpEncrypted | Store::AiohttpNacl
    )
}

/// The conformance example as built by `cargo test` (which builds every
/// example of the workspace before running tests).
pub fn conformance_binary() -> std::path::PathBuf {
    let mut path = std::env::current_exe().expect("test binary path");
    path.pop(); // deps/
    path.pop();
    path.push("examples");
    path.push(format!("conformance{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds the examples",
        path.display()
    );
    path
}
