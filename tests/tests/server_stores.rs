//! What only server-side stores on real servers do: records deleted, TTLs,
//! forged ids, key spreading, and recovery from a server that dies (merges
//! of concurrent writes are in `concurrency.rs`).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use session_examples::conformance::{Settings, typed_sessions_error_chain};
use session_tests::counters::{RedisCalls, calls};
use session_tests::servers::{
    MariaDb, Memcached, Postgres, RedisServer, ask_all, shared_memcached, shared_redis,
    shared_redis_cluster,
};
use session_tests::soak::{Network, Proxy};
use session_tests::sql::{mysql_i64, postgres_i64, sqlite_i64};
use session_tests::{Store, TestApp, record_key, settings};
use sqlx::Connection as _;
use typed_sessions::{RedisStorage, storage::AnyStorage};

/// A prefix of keys of its own for each test, so tests sharing a server
/// never see each other's records.
fn unique_prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "t{}-{}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Looks at the records of one store as the server itself sees them.
struct Probe {
    store: Store,
    prefix: String,
    /// The SQL stores' table and database.
    table: String,
    database_url: String,
}

impl Probe {
    fn settings(store: Store) -> (Settings, Self) {
        let mut settings = settings(store);
        let prefix = unique_prefix();
        settings.key_prefix = Some(prefix.clone());
        // A table of its own on the SQL stores (the app creates it).
        settings.table_name = Some(prefix.replace(['-', ':'], "_"));
        let probe = Self {
            store,
            prefix,
            table: settings.table_name.clone().unwrap_or_default(),
            database_url: settings.database_url.clone(),
        };
        (settings, probe)
    }

    /// The row of `cookie`'s session in a SQL store: `Absent`, or the
    /// seconds until its `expires_at` by the database's clock (whether or
    /// not that is past: an expired row is still a row).
    fn stored_row(&self, cookie: &str) -> Stored {
        let id = record_key("", cookie);
        let seconds = match self.store {
            Store::Postgres => postgres_i64(
                &self.database_url,
                &format!(
                    "SELECT floor(extract(epoch FROM expires_at - now()))::bigint \
                     FROM \"{}\" WHERE id = $1",
                    self.table
                ),
                &id,
            ),
            Store::MySql => mysql_i64(
                &self.database_url,
                &format!(
                    "SELECT expires_at - UNIX_TIMESTAMP() FROM `{}` WHERE id = ?",
                    self.table
                ),
                &id,
            ),
            _ => sqlite_i64(
                &self.database_url,
                &format!(
                    "SELECT expires_at - unixepoch() FROM \"{}\" WHERE id = ?1",
                    self.table
                ),
                &id,
            ),
        };
        match seconds {
            None => Stored::Absent,
            Some(seconds) => Stored::Expires(seconds.max(0).unsigned_abs()),
        }
    }

    fn ports(&self) -> Vec<u16> {
        match self.store {
            Store::Redis => vec![shared_redis().port],
            Store::RedisCluster => shared_redis_cluster().ports.clone(),
            Store::Memcached => shared_memcached().iter().map(|m| m.port).collect(),
            other => panic!("{other:?} has no server"),
        }
    }

    /// What the servers hold under the key of `cookie`'s record. Every
    /// server must answer (a failed query is not an absent record): on
    /// Redis the node that owns the key with its TTL, the others with a
    /// redirection; on Memcached each server with a hit or a miss.
    fn stored(&self, cookie: &str) -> Stored {
        if matches!(self.store, Store::Postgres | Store::MySql | Store::Sqlite) {
            return self.stored_row(cookie);
        }
        let key = record_key(&self.prefix, cookie);
        let mut found = Vec::new();
        for port in self.ports() {
            let answer = if self.store == Store::Memcached {
                ask_all(port, &format!("mg {key} t"))
            } else {
                ask_all(port, &format!("TTL {key}"))
            };
            let line = answer.lines().next().unwrap_or_default();
            let stored = if self.store == Store::Memcached {
                match line.strip_prefix("HD t") {
                    Some("-1") => Some(Stored::Forever),
                    Some(ttl) => {
                        Some(Stored::Expires(ttl.parse().unwrap_or_else(|_| {
                            panic!("memcached on {port} answered {line:?}")
                        })))
                    }
                    None if line == "EN" => None,
                    None => panic!("memcached on {port} answered {answer:?}"),
                }
            } else {
                match line.strip_prefix(':') {
                    Some("-2") => Some(Stored::Absent),
                    Some("-1") => Some(Stored::Forever),
                    Some(ttl) => {
                        Some(Stored::Expires(ttl.parse().unwrap_or_else(|_| {
                            panic!("Redis on {port} answered {line:?}")
                        })))
                    }
                    None if line.starts_with("-MOVED ") => None,
                    None => panic!("Redis on {port} answered {answer:?}"),
                }
            };
            found.extend(stored);
        }
        match (self.store, found.as_slice()) {
            (Store::Memcached, []) => Stored::Absent,
            (_, [stored]) => *stored,
            (_, []) => panic!("no Redis node answers for {key}"),
            _ => panic!("several servers answer for {key}: {found:?}"),
        }
    }

    /// The record's remaining TTL in seconds, `None` if there is no record;
    /// a record without expiry fails the test.
    fn ttl(&self, cookie: &str) -> Option<u64> {
        match self.stored(cookie) {
            Stored::Absent => None,
            Stored::Expires(ttl) => Some(ttl),
            Stored::Forever => panic!("a record stored without expiry"),
        }
    }

    fn exists(&self, cookie: &str) -> bool {
        self.stored(cookie) != Stored::Absent
    }
}

/// What a server holds under one key.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stored {
    Absent,
    /// A record without expiry.
    Forever,
    /// A record that expires in this many seconds.
    Expires(u64),
}

macro_rules! for_every_server_store {
    ($($case:ident),* $(,)?) => {
        mod redis {
            $(#[tokio::test] async fn $case() { super::$case(super::Store::Redis).await })*
        }
        mod redis_cluster {
            $(#[tokio::test] async fn $case() { super::$case(super::Store::RedisCluster).await })*
        }
        mod memcached {
            $(#[tokio::test] async fn $case() { super::$case(super::Store::Memcached).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $case() { super::$case(super::Store::Postgres).await })*
        }
        mod mysql {
            $(#[tokio::test] async fn $case() { super::$case(super::Store::MySql).await })*
        }
        mod sqlite {
            $(#[tokio::test] async fn $case() { super::$case(super::Store::Sqlite).await })*
        }
    };
}

for_every_server_store!(
    records_are_deleted_on_invalidate_and_login,
    ttl_matches_max_age,
    forged_ids_leave_no_record,
    a_users_index_drops_the_sessions_that_ended,
);

/// A user who signs in and out a hundred times leaves an empty index, not
/// a hundred entries: a logout takes its session's entry out with the
/// record (entries of records that expired are dropped as new ones come,
/// past 64).
async fn a_users_index_drops_the_sessions_that_ended(store: Store) {
    if !matches!(store, Store::Redis | Store::RedisCluster) {
        return; // The set per user is Redis's; see `users.rs` for the others.
    }
    let (settings, probe) = Probe::settings(store);
    let app = TestApp::conformance(settings).await;
    let user = "serial-signer";
    for _ in 0..100 {
        let cookie = app.session_with(r#"{"a": 1}"#).await;
        let cookie = app
            .post(
                "/session/bind",
                Some(&cookie),
                &json!({ "user": user }).to_string(),
            )
            .await
            .new_cookie();
        app.post("/session/invalidate", Some(&cookie), "").await;
    }
    let index = {
        use base64::Engine as _;
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(user.as_bytes());
        format!(
            "{}u:{}",
            probe.prefix,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
        )
    };
    let size = || {
        probe
            .ports()
            .into_iter()
            .filter_map(|port| {
                let answer = ask_all(port, &format!("SCARD {index}"));
                answer
                    .lines()
                    .next()?
                    .strip_prefix(':')?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .expect("the owning node answers")
    };
    assert_eq!(size(), 0, "the index after 100 sign-ins and outs");
    // Sessions that end without a logout (their records deleted behind the
    // store's back, as an expiry does) are dropped as new ones come.
    for _ in 0..100 {
        let cookie = app.session_with(r#"{"a": 1}"#).await;
        let cookie = app
            .post(
                "/session/bind",
                Some(&cookie),
                &json!({ "user": user }).to_string(),
            )
            .await
            .new_cookie();
        for port in probe.ports() {
            ask_all(port, &format!("DEL {}", record_key(&probe.prefix, &cookie)));
        }
    }
    let size = size();
    assert!(
        (1..=65).contains(&size),
        "the index holds {size} entries after 100 sessions that expired"
    );
}

async fn records_are_deleted_on_invalidate_and_login(store: Store) {
    let (settings, probe) = Probe::settings(store);
    let app = TestApp::conformance(settings).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    assert!(
        probe.exists(&cookie),
        "the record is stored under the documented key"
    );
    app.post("/session/invalidate", Some(&cookie), "").await;
    assert!(!probe.exists(&cookie), "invalidate deletes the record");

    let old = app.session_with(r#"{"a": 1}"#).await;
    let new = app
        .post("/session/login", Some(&old), r#"{"user": "ann"}"#)
        .await
        .new_cookie();
    assert!(!probe.exists(&old), "login deletes the old record");
    assert!(probe.exists(&new));
    let emptied = app.patch(Some(&new), r#"{"user": null}"#).await;
    assert_eq!(emptied.new_cookie(), "");
    assert!(!probe.exists(&new), "an emptied session leaves no record");
}

async fn ttl_matches_max_age(store: Store) {
    let (mut settings, probe) = Probe::settings(store);
    settings.max_age = Some(120);
    let app = TestApp::conformance(settings).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    let ttl = probe.ttl(&cookie).expect("a record");
    // A second more than the max age: the layer keeps a session through the
    // second its max age ends in, and so must the store.
    assert!((120..=121).contains(&ttl), "TTL {ttl} for max_age 120");

    let cookie = app
        .post("/session/max_age", Some(&cookie), r#"{"max_age": 30}"#)
        .await
        .new_cookie();
    let ttl = probe.ttl(&cookie).expect("a record");
    assert!(
        (30..=31).contains(&ttl),
        "TTL {ttl} for a per-session max_age of 30"
    );

    let cookie = app
        .post("/session/max_age", Some(&cookie), r#"{"max_age": null}"#)
        .await
        .new_cookie();
    let ttl = probe.ttl(&cookie).expect("a record");
    assert!(
        (1800..=1801).contains(&ttl),
        "TTL {ttl}: a browser-session cookie keeps the layer's idle timeout, never forever"
    );
}

async fn forged_ids_leave_no_record(store: Store) {
    let (settings, probe) = Probe::settings(store);
    let app = TestApp::conformance(settings).await;
    let forged = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    app.get("/session", Some(forged)).await;
    let reply = app.patch(Some(forged), r#"{"a": 1}"#).await;
    let issued = reply.new_cookie();
    assert_ne!(issued, forged);
    assert!(!probe.exists(forged), "no record under the forged id");
    assert!(probe.exists(&issued));
}

#[tokio::test]
async fn malformed_ids_never_reach_redis() {
    // A server of its own: other tests' commands would count too.
    let server = RedisServer::start();
    let mut settings = settings(Store::Redis);
    settings.redis_url = server.url();
    let app = TestApp::conformance(settings).await;
    let mut counter = RedisCalls::new(&[server.port]);
    for bad in [
        "short",
        "../../etc/passwd",
        "AAAA*AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "%00",
    ] {
        let reply = app.get("/session", Some(bad)).await;
        assert_eq!(reply.json()["new"], true);
    }
    assert_eq!(
        counter.since_last(),
        calls(&[]),
        "a malformed cookie reached Redis"
    );
    // The control: a well-formed id the store does not hold is looked up,
    // and the counter sees it.
    let unknown = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_eq!(app.get("/session", Some(unknown)).await.json()["new"], true);
    assert_eq!(counter.since_last(), calls(&[("hgetall", 1)]));
}

#[tokio::test]
async fn keys_spread_over_both_memcached_servers() {
    // Servers of their own: other tests writing to the shared ones would
    // make both look used.
    let servers = [Memcached::start(), Memcached::start()];
    let mut settings = settings(Store::Memcached);
    settings.memcached_servers = servers.iter().map(Memcached::addr).collect();
    let app = TestApp::conformance(settings).await;
    let items = |server: &Memcached| -> u64 {
        server
            .stats()
            .lines()
            .find_map(|line| line.strip_prefix("STAT total_items "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    for _ in 0..40 {
        app.session_with(r#"{"a": 1}"#).await;
    }
    let counts: Vec<u64> = servers.iter().map(items).collect();
    assert_eq!(
        counts.iter().sum::<u64>(),
        40,
        "one item per session: {counts:?}"
    );
    assert!(
        counts.iter().all(|&n| n > 0),
        "a server got none of 40 sessions: {counts:?}"
    );
}

#[tokio::test]
async fn the_redis_database_of_the_url_is_used() {
    let server = shared_redis();
    let mut settings = settings(Store::Redis);
    settings.redis_url = format!("redis://127.0.0.1:{}/3", server.port);
    let prefix = unique_prefix();
    settings.key_prefix = Some(prefix.clone());
    let app = TestApp::conformance(settings).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    let key = record_key(&prefix, &cookie);
    assert!(
        server
            .command(&format!("SELECT 3\r\nEXISTS {key}"))
            .contains(":1")
    );
    assert!(
        server.command(&format!("EXISTS {key}")).starts_with(":0"),
        "not in database 0"
    );
}

#[tokio::test]
async fn ttl_refresh_on_read_extends_the_record_without_a_write() {
    // A server of its own, to count the commands of one read.
    let server = RedisServer::start();
    let prefix = unique_prefix();
    let storage = RedisStorage::connect(&server.url())
        .await
        .unwrap()
        .with_key_prefix(prefix.clone())
        .with_ttl_refresh_on_read(true);
    let mut settings = settings(Store::Redis);
    settings.max_age = Some(100);
    let app = TestApp::conformance_on(settings, AnyStorage::new(storage), |routes| routes).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    let key = record_key(&prefix, &cookie);
    // A first read loads the script into Redis, a one-off cost.
    assert_eq!(app.get("/session", Some(&cookie)).await.status, 200);
    // As if 60 seconds had passed.
    server.command(&format!("EXPIRE {key} 40"));
    app.clock.advance(60);
    let mut counter = RedisCalls::new(&[server.port]);
    let reply = app.get("/session", Some(&cookie)).await;
    assert_eq!(reply.data(), json!({"a": 1}));
    assert_eq!(
        counter.since_last(),
        calls(&[
            ("evalsha", 1),
            ("hgetall", 1),
            ("hget", 1),
            ("hset", 1),
            ("expire", 1),
        ]),
        "one script that reads, moves the last activity and sets the TTL; \
         no save (its script would set the fields and the TTL again)"
    );
    assert_eq!(reply.new_cookie(), cookie, "the same id, sent again");
    let attributes = reply.cookie_attributes();
    assert!(
        attributes.contains(&"Max-Age=100".to_owned())
            && attributes.contains(&"Expires=Tue, 14 Nov 2023 22:16:00 GMT".to_owned()),
        "the browser's expiry moves with the read: {attributes:?}"
    );
    let ttl: u64 = server
        .command(&format!("TTL {key}"))
        .trim_start_matches(':')
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((100..=101).contains(&ttl), "TTL {ttl} after a read");
    app.clock.advance(60);
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"a": 1}),
        "the read counted as activity for the idle timeout too"
    );
}

#[tokio::test]
async fn a_redis_clock_that_steps_costs_a_write_one_more_round_trip_not_a_503() {
    // A server of its own, to count the commands of one save.
    let server = RedisServer::start();
    let storage = RedisStorage::connect(&server.url())
        .await
        .unwrap()
        .with_key_prefix(unique_prefix());
    let app = TestApp::conformance_on(
        settings(Store::Redis),
        AnyStorage::new(storage.clone()),
        |routes| routes,
    )
    .await;
    // Loads the scripts into Redis, a one-off cost.
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    assert_eq!(app.patch(Some(&cookie), r#"{"a": 1}"#).await.status, 200);
    // As if Redis' clock had jumped ten seconds ahead since the app read
    // it: every deadline the app gives now looks ten seconds past.
    typed_sessions::__private::step_redis_clock(&storage, -10_000_000);
    let mut counter = RedisCalls::new(&[server.port]);
    let reply = app.patch(Some(&cookie), r#"{"b": 2}"#).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        counter.since_last().get("evalsha").copied(),
        Some(2),
        "the write refused as late, and sent again with Redis' clock read \
         from the refusal"
    );
    let reply = app.patch(Some(&cookie), r#"{"c": 3}"#).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        counter.since_last().get("evalsha").copied(),
        Some(1),
        "the clock is known again: one script per save"
    );
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"a": 1, "b": 2, "c": 3})
    );
}

async fn recovers_after_restart(app: &TestApp, stop: impl FnOnce(), restart: impl FnOnce()) {
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    stop();
    for reply in [
        app.get("/session", Some(&cookie)).await,
        app.patch(Some(&cookie), r#"{"a": 2}"#).await,
        app.patch(None, r#"{"b": 1}"#).await,
    ] {
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert!(reply.set_cookies().is_empty());
        assert!(reply.json()["error"].is_string());
    }
    restart();
    let mut recovered = None;
    for _ in 0..100 {
        let reply = app.patch(None, r#"{"back": true}"#).await;
        if reply.status == 200 {
            recovered = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = recovered.expect("the app recovers by itself within 10 s");
    let cookie = reply.new_cookie();
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"back": true})
    );
}

#[tokio::test]
async fn a_redis_that_dies_gives_503s_and_the_app_recovers_when_it_returns() {
    let mut server = RedisServer::start();
    let port = server.port;
    let mut settings = settings(Store::Redis);
    settings.redis_url = server.url();
    let app = TestApp::conformance(settings).await;
    let mut replacement = None;
    recovers_after_restart(
        &app,
        || server.stop(),
        || replacement = Some(RedisServer::start_on(port)),
    )
    .await;
}

#[tokio::test]
async fn a_memcached_that_dies_gives_503s_and_the_app_recovers_when_it_returns() {
    let mut server = Memcached::start();
    let port = server.port;
    let mut settings = settings(Store::Memcached);
    settings.memcached_servers = vec![server.addr()];
    let app = TestApp::conformance(settings).await;
    let mut replacement = None;
    recovers_after_restart(
        &app,
        || server.stop(),
        || replacement = Some(Memcached::start_on(port)),
    )
    .await;
}

/// A connection to Memcached that stops answering (a half-open peer, a
/// stalled network) is given up once its oldest request has waited the
/// command timeout: its requests get 503s meanwhile, and when the network
/// is back the next requests dial a new connection instead of queueing
/// forever behind replies that will never come.
#[tokio::test]
async fn a_memcached_connection_that_stops_answering_is_replaced() {
    let server = Memcached::start();
    let proxy = Proxy::start(server.port).await;
    let mut settings = settings(Store::Memcached);
    settings.memcached_servers = vec![format!("127.0.0.1:{}", proxy.port)];
    let app = TestApp::conformance(settings).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;

    // Everything sent from now on is held for an hour on this connection.
    proxy.set(Network::Slow(Duration::from_secs(3600)));
    let reply = app.get("/session", Some(&cookie)).await;
    assert_eq!(reply.status, 503, "{}", reply.body);

    proxy.set(Network::Healthy);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = app.get("/session", Some(&cookie)).await;
        if reply.status == 200 {
            assert_eq!(reply.data(), json!({"a": 1}));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the app still answers {} {} five seconds after the network came back",
            reply.status,
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A longer command timeout is also how long a connection may wait for a
/// reply before it counts as dead: a store 1.8 s away answers within a
/// 3-second timeout, instead of the connection being dropped at the
/// default second.
#[tokio::test]
async fn a_longer_memcached_command_timeout_keeps_a_slow_connection() {
    let server = Memcached::start();
    let proxy = Proxy::start(server.port).await;
    let storage = typed_sessions::MemcachedStorage::connect([format!("127.0.0.1:{}", proxy.port)])
        .await
        .unwrap()
        .with_command_timeout(Duration::from_secs(3));
    let app = TestApp::conformance_on(
        settings(Store::Memcached),
        AnyStorage::new(storage),
        |routes| routes,
    )
    .await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    // 900 ms each way.
    proxy.set(Network::Slow(Duration::from_millis(900)));
    let reply = app.get("/session", Some(&cookie)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.data(), json!({"a": 1}));
}

/// Pointed at something that is not memcached (here Redis, a clumsy
/// `MEMCACHED_URL`), the storage refuses to start and says what it heard,
/// not only that a connection was lost.
#[tokio::test]
async fn a_memcached_storage_pointed_at_redis_says_what_it_heard() {
    let redis = shared_redis();
    let error = typed_sessions::MemcachedStorage::connect([format!("127.0.0.1:{}", redis.port)])
        .await
        .expect_err("Redis is not memcached");
    // The error and its causes, as the conformance app prints them.
    let message = typed_sessions_error_chain(&error);
    assert!(
        message.contains("-ERR") && message.contains(&redis.port.to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn memcached_sessions_longer_than_30_days_still_expire_when_they_should() {
    let (mut settings, probe) = Probe::settings(Store::Memcached);
    settings.max_age = Some(40 * 86_400);
    let app = TestApp::conformance(settings).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    // Over 30 days memcached reads a relative TTL as a date in 1970; the
    // store sends an absolute time, which the server reports back as the
    // remaining seconds.
    let ttl = probe
        .ttl(&cookie)
        .expect("a record that did not expire at once");
    assert!(
        (40 * 86_400 - 5..=40 * 86_400 + 2).contains(&ttl),
        "TTL {ttl}"
    );
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"a": 1})
    );
}

#[tokio::test]
async fn a_session_over_the_memcached_item_size_fails_before_anything_is_sent() {
    let servers = shared_memcached();
    let storage = typed_sessions::MemcachedStorage::connect(servers.iter().map(Memcached::addr))
        .await
        .unwrap()
        .with_key_prefix(unique_prefix())
        .with_max_item_bytes(2_000);
    let app = TestApp::conformance_on(
        settings(Store::Memcached),
        AnyStorage::new(storage),
        |routes| routes,
    )
    .await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    let reply = app
        .patch(
            Some(&cookie),
            &json!({ "big": "x".repeat(3_000) }).to_string(),
        )
        .await;
    assert_eq!(
        reply.status, 500,
        "too large is not a passing outage: {}",
        reply.body
    );
    assert!(reply.set_cookies().is_empty());
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"a": 1}),
        "the old session stays whole"
    );
}

#[tokio::test]
async fn a_redis_slower_than_the_command_timeout_gives_503s_then_recovers() {
    let server = RedisServer::start();
    let mut settings = settings(Store::Redis);
    settings.redis_url = server.url();
    let app = TestApp::conformance(settings).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    // Redis holds every client's commands for 3 s, three times the command
    // timeout. `CLIENT PAUSE` answers at once: from its answer on, the pause
    // is on, and it lasts until at least 3 s after `paused_at`.
    let paused_at = Instant::now();
    let mut pause = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    pause.write_all(b"CLIENT PAUSE 3000 ALL\r\n").unwrap();
    let mut answer = String::new();
    BufReader::new(&pause).read_line(&mut answer).unwrap();
    assert_eq!(answer, "+OK\r\n", "Redis paused");
    let reply = app.patch(Some(&cookie), r#"{"a": 2}"#).await;
    let answered_after = paused_at.elapsed();
    assert_eq!(
        reply.status, 503,
        "a slow store fails the request instead of holding it"
    );
    assert!(
        answered_after < Duration::from_secs(3),
        "answered after {answered_after:?}, past the pause: not the command timeout"
    );
    assert!(reply.set_cookies().is_empty());
    let mut data = None;
    for _ in 0..100 {
        let reply = app.get("/session", Some(&cookie)).await;
        if reply.status == 200 {
            data = Some(reply.data());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        data,
        Some(json!({"a": 1})),
        "recovered, and the timed-out write was not applied"
    );
}

#[tokio::test]
async fn a_postgres_that_dies_gives_503s_and_the_app_recovers_when_it_returns() {
    // A server of its own: stopping the shared one would fail other tests.
    let server = std::cell::RefCell::new(Postgres::start());
    let mut settings = settings(Store::Postgres);
    settings.database_url = server.borrow().url();
    let app = TestApp::conformance(settings).await;
    recovers_after_restart(
        &app,
        || server.borrow_mut().stop(),
        || server.borrow_mut().restart(),
    )
    .await;
}

#[tokio::test]
async fn a_postgres_statement_past_the_command_timeout_gives_503s_then_recovers() {
    let (settings, probe) = Probe::settings(Store::Postgres);
    let url = settings.database_url.clone();
    let app = TestApp::conformance(settings).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;

    // Another client locks the table: every statement of the store waits.
    let mut locker = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE \"{}\" IN ACCESS EXCLUSIVE MODE",
        probe.table
    ))
    .execute(&mut locker)
    .await
    .unwrap();
    for reply in [
        app.get("/session", Some(&cookie)).await,
        app.patch(Some(&cookie), r#"{"a": 2}"#).await,
    ] {
        assert_eq!(
            reply.status, 503,
            "a blocked statement fails the request instead of holding it: {}",
            reply.body
        );
        assert!(reply.set_cookies().is_empty());
    }
    // The server's `statement_timeout` cancels what the store gave up on:
    // once nothing waits on the lock, releasing it cannot let a late write
    // through.
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE wait_event_type = 'Lock' AND query LIKE '%\"{}\"%'",
        probe.table
    );
    let mut cancelled = false;
    for _ in 0..100 {
        let (count,): (i64,) = sqlx::query_as(&waiting)
            .fetch_one(&mut locker)
            .await
            .unwrap();
        if count == 0 {
            cancelled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cancelled, "the server cancels the blocked statements");
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();

    let reply = app.get("/session", Some(&cookie)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.data(),
        json!({"a": 1}),
        "recovered, and the timed-out write was not applied"
    );
}

#[tokio::test]
async fn a_mariadb_that_dies_gives_503s_and_the_app_recovers_when_it_returns() {
    // A server of its own: stopping the shared one would fail other tests.
    let server = std::cell::RefCell::new(MariaDb::start());
    let mut settings = settings(Store::MySql);
    settings.database_url = server.borrow().url();
    let app = TestApp::conformance(settings).await;
    recovers_after_restart(
        &app,
        || server.borrow_mut().stop(),
        || server.borrow_mut().restart(),
    )
    .await;
}

#[tokio::test]
async fn a_mariadb_statement_past_the_command_timeout_gives_503s_then_recovers() {
    let (settings, probe) = Probe::settings(Store::MySql);
    let url = settings.database_url.clone();
    let app = TestApp::conformance(settings).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;

    // Another client holds the session's row: the save waits for its lock.
    let mut locker = sqlx::MySqlConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    let locked = sqlx::query(&format!(
        "SELECT id FROM `{}` WHERE id = ? FOR UPDATE",
        probe.table
    ))
    .bind(record_key("", &cookie))
    .fetch_all(&mut locker)
    .await
    .unwrap();
    assert_eq!(locked.len(), 1, "the session's row is held");
    let reply = app.patch(Some(&cookie), r#"{"a": 2}"#).await;
    assert_eq!(
        reply.status, 503,
        "a blocked statement fails the request instead of holding it: {}",
        reply.body
    );
    assert!(reply.set_cookies().is_empty());
    // The server's `max_statement_time` stops what the store gave up on:
    // once nothing waits on the lock, releasing it cannot let a late write
    // through.
    let waiting = format!(
        "SELECT count(*) FROM information_schema.PROCESSLIST \
         WHERE INFO LIKE 'UPDATE `{}`%'",
        probe.table
    );
    let mut stopped = false;
    for _ in 0..100 {
        let (count,): (i64,) = sqlx::query_as(&waiting)
            .fetch_one(&mut locker)
            .await
            .unwrap();
        if count == 0 {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped, "the server stops the blocked statement");
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();

    let reply = app.get("/session", Some(&cookie)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.data(),
        json!({"a": 1}),
        "recovered, and the timed-out write was not applied"
    );
}
