//! The local cache in front of Redis (`RedisOptions::with_cache`),
//! on real servers: what a cached read costs (counted by Redis), how soon
//! one instance sees what another changed (measured, over many trials),
//! that a lagging connection never serves a stale session, and that the
//! cache holds no more than its capacity.

use std::time::{Duration, Instant};

use serde_json::json;
use session_examples::conformance::Store;
use session_tests::counters::{Calls, RedisCalls, calls};
use session_tests::servers::{RedisCluster, RedisServer};
use session_tests::soak::{Network, Proxy};
use session_tests::{TestApp, settings};
use typed_sessions::{
    RedisStorage,
    storage::{AnyStorage, RedisCache, RedisOptions},
};

/// The heartbeat of the tests' caches: short, so a test waits little for a
/// confirmed connection.
const MAX_LAG: Duration = Duration::from_millis(100);

/// The conformance app on a cached Redis storage at `urls` (one URL:
/// standalone; several: cluster seed nodes), and the storage, to read its
/// statistics.
async fn cached_app(urls: &[String], cache: RedisCache) -> (TestApp, RedisStorage) {
    let options = match urls {
        [url] => RedisOptions::standalone(url),
        nodes => RedisOptions::cluster(nodes),
    };
    let storage = RedisStorage::connect(options.with_cache(cache))
        .await
        .expect("connect with a cache");
    let app = TestApp::conformance_on(
        settings(Store::Redis),
        AnyStorage::new(storage.clone()),
        |routes| routes,
    )
    .await;
    (app, storage)
}

/// Reads `cookie`'s session through `app` until a read is served from the
/// cache (the heartbeat confirmed the connection since the last write),
/// and returns that read's data.
async fn read_until_cached(
    app: &TestApp,
    storage: &RedisStorage,
    cookie: &str,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hits = storage.cache_statistics().expect("a cache").hits;
        let reply = app.get("/session", Some(cookie)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        if storage.cache_statistics().expect("a cache").hits > hits {
            return reply.data();
        }
        assert!(
            Instant::now() < deadline,
            "no read was served from the cache in 10 s: {:?}",
            storage.cache_statistics()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The commands since the last count, without the cache's heartbeat
/// `PING`s, which go out on their own schedule.
fn counted(counter: &mut RedisCalls) -> Calls {
    let mut calls = counter.since_last();
    calls.remove("ping");
    calls
}

async fn cached_costs(urls: &[String], ports: &[u16]) {
    // A heartbeat late past the lag, or an entry expiring (entries live as
    // long as the lag), would send a read to Redis and change the counts:
    // a lag a loaded machine does not reach within one check.
    let cache = RedisCache::new().with_max_lag(Duration::from_secs(2));
    let (app, storage) = cached_app(urls, cache).await;
    // Scripts loaded on every node first (their first use costs a
    // `SCRIPT LOAD`): sessions on random nodes, written and ended.
    let mut warm_up = RedisCalls::new(ports);
    let mut loaded = 0;
    for _ in 0..200 {
        let cookie = app.session_with(r#"{"count": 0}"#).await;
        app.post("/session/incr?key=count", Some(&cookie), "").await;
        app.post("/session/invalidate", Some(&cookie), "").await;
        loaded += warm_up
            .since_last()
            .get("script|load")
            .copied()
            .unwrap_or(0);
        if loaded == 3 * ports.len() as u64 {
            break;
        }
    }
    assert_eq!(loaded, 3 * ports.len() as u64, "three scripts on each node");
    let cookie = app.session_with(r#"{"count": 0}"#).await;
    assert_eq!(
        read_until_cached(&app, &storage, &cookie).await,
        json!({"count": 0})
    );

    let mut counter = RedisCalls::new(ports);
    for _ in 0..20 {
        let reply = app.get("/session", Some(&cookie)).await;
        assert_eq!(reply.data(), json!({"count": 0}));
    }
    assert_eq!(
        counted(&mut counter),
        calls(&[]),
        "a cached read costs no command at all"
    );

    for _ in 0..20 {
        let reply = app.get("/untouched", Some(&cookie)).await;
        assert_eq!(reply.status, 200);
    }
    assert_eq!(
        counted(&mut counter),
        calls(&[]),
        "an untouched session costs nothing"
    );

    for i in 1..=3 {
        read_until_cached(&app, &storage, &cookie).await;
        counted(&mut counter);
        let reply = app.post("/session/incr?key=count", Some(&cookie), "").await;
        assert_eq!(reply.json()["value"], json!(i), "{}", reply.body);
        assert_eq!(
            counted(&mut counter),
            calls(&[
                ("evalsha", 1),
                ("time", 1),
                ("expire", 1),
                ("hset", 1),
                ("hdel", 1),
            ]),
            "a write after a cached read is the save's one script, no load"
        );
        // Right after its own write, this instance reads from Redis: its
        // copy is gone, and the read may not wait for the invalidation.
        let reply = app.get("/session", Some(&cookie)).await;
        assert_eq!(reply.data(), json!({"count": i}));
        let read = counted(&mut counter);
        assert_eq!(
            read.get("hgetall"),
            Some(&1),
            "a read after a write goes to Redis: {read:?}"
        );
    }
}

#[tokio::test]
async fn a_cached_read_costs_no_round_trip() {
    let server = RedisServer::start();
    cached_costs(&[server.url()], &[server.port]).await;
}

#[tokio::test]
async fn a_cached_read_costs_no_round_trip_on_a_cluster() {
    let cluster = RedisCluster::start();
    let urls: Vec<String> = cluster.url().split(',').map(str::to_owned).collect();
    cached_costs(&urls, &cluster.ports).await;
}

/// Two app instances on one Redis, both caching: after one answers a
/// change, a logout or a revocation, how long the other still serves what
/// it had cached. Over many trials the longest window must stay within the
/// cache's bound; on one machine it is the time an invalidation takes to
/// arrive, and the test prints the longest seen.
async fn invalidation_window(urls: &[String]) {
    let cache = RedisCache::new().with_max_lag(MAX_LAG);
    let (first, first_storage) = cached_app(urls, cache).await;
    let (second, _) = cached_app(urls, cache).await;
    let mut longest = Duration::ZERO;
    let mut stale_reads = 0;
    let trials = 60;
    for trial in 0..trials {
        let cookie = first.session_with(r#"{"count": 0}"#).await;
        read_until_cached(&first, &first_storage, &cookie).await;
        // What the second instance does, and what the first must see then.
        let (answered, expected) = match trial % 3 {
            0 => {
                let reply = second
                    .post("/session/incr?key=count", Some(&cookie), "")
                    .await;
                assert_eq!(reply.status, 200, "{}", reply.body);
                (Instant::now(), json!({"count": 1}))
            }
            1 => {
                let reply = second.post("/session/invalidate", Some(&cookie), "").await;
                assert_eq!(reply.status, 200, "{}", reply.body);
                (Instant::now(), json!({}))
            }
            _ => {
                let user = format!("window-{trial}");
                let bound = second
                    .post(
                        "/session/bind",
                        Some(&cookie),
                        &format!(r#"{{"user": "{user}"}}"#),
                    )
                    .await;
                assert_eq!(bound.status, 200, "{}", bound.body);
                let cookie = bound.new_cookie();
                read_until_cached(&first, &first_storage, &cookie).await;
                let revoked = second
                    .post(&format!("/users/{user}/revoke"), None, "")
                    .await;
                assert_eq!(revoked.json()["revoked"], json!(1), "{}", revoked.body);
                let answered = Instant::now();
                let window = seen_within(&first, &cookie, &json!({}), answered).await;
                stale_reads += usize::from(window > Duration::ZERO);
                longest = longest.max(window);
                continue;
            }
        };
        let window = seen_within(&first, &cookie, &expected, answered).await;
        stale_reads += usize::from(window > Duration::ZERO);
        longest = longest.max(window);
    }
    eprintln!(
        "invalidation window over {trials} trials: longest {longest:?}, \
         {stale_reads} trials with a stale read at all"
    );
}

/// Reads `cookie`'s session through `app` until it shows `expected`, and
/// returns how long after `answered` the last read that still showed
/// something else was sent (zero: the first read was current). A read sent
/// later than the cache's bound after the other instance's answer must be
/// current: the request's own time to run cannot fail the test.
async fn seen_within(
    app: &TestApp,
    cookie: &str,
    expected: &serde_json::Value,
    answered: Instant,
) -> Duration {
    let mut last_stale = None;
    loop {
        let sent = Instant::now();
        let reply = app.get("/session", Some(cookie)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        if reply.data() == *expected {
            return last_stale.map_or(Duration::ZERO, |at: Instant| at - answered);
        }
        last_stale = Some(sent);
        assert!(
            sent - answered <= MAX_LAG,
            "a read sent {:?} after the other instance's answer still showed {}, \
             past the bound of {MAX_LAG:?}",
            sent - answered,
            reply.data(),
        );
    }
}

#[tokio::test]
async fn another_instance_sees_a_change_logout_or_revocation_within_the_bound() {
    let server = RedisServer::start();
    invalidation_window(&[server.url()]).await;
}

#[tokio::test]
async fn another_instance_sees_a_change_within_the_bound_on_a_cluster() {
    let cluster = RedisCluster::start();
    let urls: Vec<String> = cluster.url().split(',').map(str::to_owned).collect();
    invalidation_window(&urls).await;
}

/// A Redis, a proxy in front of it whose network a test can make slow or
/// cut, a caching app through the proxy (and its storage) and another
/// caching app straight on Redis.
async fn behind_a_proxy() -> (RedisServer, Proxy, TestApp, RedisStorage, TestApp) {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port).await;
    let cache = RedisCache::new().with_max_lag(MAX_LAG);
    let (proxied, storage) =
        cached_app(&[format!("redis://127.0.0.1:{}/0", proxy.port)], cache).await;
    let (direct, _) = cached_app(&[server.url()], cache).await;
    (server, proxy, proxied, storage, direct)
}

/// An instance whose connection to Redis lags (its invalidations held up
/// in the network) must stop serving its cache: once the bound has passed,
/// a session another instance ended is not served, not even from memory;
/// the request waits for Redis and gets a 503 rather than the old data.
#[tokio::test]
async fn a_lagging_connection_never_serves_a_stale_session() {
    let (_server, proxy, lagging, storage, other) = behind_a_proxy().await;

    let cookie = lagging.session_with(r#"{"secret": "before"}"#).await;
    assert_eq!(
        read_until_cached(&lagging, &storage, &cookie).await,
        json!({"secret": "before"})
    );
    proxy.set(Network::Slow(Duration::from_secs(3)));
    let reply = other.post("/session/invalidate", Some(&cookie), "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Past the bound (twice over), the heartbeat has gone unanswered.
    tokio::time::sleep(2 * MAX_LAG).await;
    let reply = lagging.get("/session", Some(&cookie)).await;
    assert!(
        reply.status == 503 || (reply.status == 200 && reply.data() == json!({})),
        "a session ended elsewhere was served from the cache of a lagging \
         connection: {} {}",
        reply.status,
        reply.body
    );
    assert!(
        storage.cache_statistics().expect("a cache").bypassed > 0,
        "the load went past the cache"
    );

    // Healed: the invalidation arrives, and the session stays ended.
    proxy.set(Network::Healthy);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = lagging.get("/session", Some(&cookie)).await;
        if reply.status == 200 {
            assert_eq!(reply.data(), json!({}), "ended stays ended");
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {}", reply.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A connection that drops takes its cache with it: what changed while it
/// was down is not served from the old copy once a new connection answers.
#[tokio::test]
async fn a_dropped_connection_starts_an_empty_cache() {
    let (_server, proxy, cut_off, storage, other) = behind_a_proxy().await;

    let cookie = cut_off.session_with(r#"{"count": 0}"#).await;
    read_until_cached(&cut_off, &storage, &cookie).await;
    proxy.set(Network::Cut);
    let reply = other
        .post("/session/incr?key=count", Some(&cookie), "")
        .await;
    assert_eq!(reply.json()["value"], json!(1), "{}", reply.body);
    let reply = cut_off.get("/session", Some(&cookie)).await;
    assert!(
        reply.status == 503 || reply.data() == json!({"count": 1}),
        "served the old copy while cut off: {} {}",
        reply.status,
        reply.body
    );
    proxy.set(Network::Healthy);
    // Once the new connection's heartbeat answers, reads may be cached
    // again: the first must come from Redis, with the change.
    assert_eq!(
        read_until_cached(&cut_off, &storage, &cookie).await,
        json!({"count": 1})
    );
}

/// The cache keeps at most its capacity: with room for two records, a
/// third pushes out the least recently used, whose next read costs a
/// round trip again.
#[tokio::test]
async fn the_cache_holds_at_most_its_capacity() {
    let server = RedisServer::start();
    let cache = RedisCache::new()
        .with_max_lag(Duration::from_secs(2))
        .with_capacity(2);
    let (app, storage) = cached_app(&[server.url()], cache).await;
    let mut cookies = Vec::new();
    for i in 0..3 {
        cookies.push(app.session_with(&format!(r#"{{"n": {i}}}"#)).await);
    }
    let mut counter = RedisCalls::new(&[server.port]);
    for cookie in &cookies[..2] {
        read_until_cached(&app, &storage, cookie).await;
    }
    counted(&mut counter);
    for cookie in &cookies[..2] {
        app.get("/session", Some(cookie)).await;
    }
    assert_eq!(counted(&mut counter), calls(&[]), "two records fit");
    read_until_cached(&app, &storage, &cookies[2]).await;
    counted(&mut counter);
    let reply = app.get("/session", Some(&cookies[0])).await;
    assert_eq!(reply.data(), json!({"n": 0}));
    let read = counted(&mut counter);
    assert_eq!(
        read.get("hgetall"),
        Some(&1),
        "the least recently used record was pushed out: {read:?}"
    );
}
