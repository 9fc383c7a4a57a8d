//! Redis through Sentinel: the storage finds the master the Sentinels
//! name, follows a failover by itself (no restart), answers 503 while
//! there is no master, and serves no stale copy from its local cache after
//! one. Real `redis-server` processes: a master, a replica and three
//! Sentinels of the test's own.

use std::time::{Duration, Instant};

use serde_json::json;
use session_examples::conformance::Settings;
use session_tests::servers::RedisSentinels;
use session_tests::{Store, TestApp};

/// The app on `group`'s Sentinels, with the local cache on or off.
async fn app(group: &RedisSentinels, cache: bool) -> TestApp {
    // Not `session_tests::settings`, which would start the Sentinels the
    // other tests of a binary share.
    let mut settings = Settings::new(Store::RedisSentinel);
    settings.redis_url = group.urls();
    settings.redis_cache = cache;
    TestApp::conformance(settings).await
}

/// Sends `request` every 100 ms until it answers 200, for at most 30 s;
/// every other answer must be a 503 (the store unavailable, not an error
/// of the app). How long it took.
async fn until_served<F, Fut>(mut request: F) -> (Duration, session_tests::Reply)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = session_tests::Reply>,
{
    let start = Instant::now();
    loop {
        let reply = request().await;
        if reply.status == 200 {
            return (start.elapsed(), reply);
        }
        assert_eq!(
            reply.status, 503,
            "while there is no master, the store is unavailable: {}",
            reply.body
        );
        assert!(
            reply.set_cookies().is_empty(),
            "a failed save sets no cookie"
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still no master after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_is_followed_and_writes_resume_without_a_restart() {
    let mut group = RedisSentinels::start();
    let app = app(&group, false).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    let reply = app.patch(Some(&cookie), r#"{"b": 2}"#).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let cookie = reply.new_cookie();
    let old_master = group.watched_port(group.master.port);
    assert_eq!(group.master_port(), Some(old_master));
    group.wait_for_replication();

    group.kill_master();
    let (_, reply) = until_served(|| app.patch(Some(&cookie), r#"{"c": 3}"#)).await;
    let cookie = reply.new_cookie();
    // Every Sentinel knows by now (one that was not the failover's leader
    // may still name the dead master for a moment).
    group.wait_for_failover();
    assert_eq!(
        group.master_port(),
        Some(group.watched_port(group.replica.port)),
        "the replica took over"
    );
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"a": 1, "b": 2, "c": 3}),
        "what was replicated before the failover is kept, and writes resume"
    );
    let fresh = app.session_with(r#"{"new": true}"#).await;
    assert_eq!(
        app.get("/session", Some(&fresh)).await.data(),
        json!({"new": true}),
        "new sessions are made on the new master"
    );
}

/// A failover makes a new connection, whose local cache starts empty: a
/// record another instance changed on the new master is read afresh, never
/// served from what was cached of the old one. The cache's lag is 2 s
/// here, so the copy cached before the failover would still be served
/// after it by a cache that kept it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_cache_serves_nothing_of_the_old_master_after_a_failover() {
    use typed_sessions::RedisStorage;
    use typed_sessions::storage::{AnyStorage, RedisCache, RedisOptions};

    let mut group = RedisSentinels::start();
    let sentinels: Vec<String> = group.urls().split(',').map(str::to_owned).collect();
    let storage = RedisStorage::connect(
        RedisOptions::sentinel(sentinels, session_tests::servers::SENTINEL_MASTER)
            .with_cache(RedisCache::new().with_max_lag(Duration::from_secs(2))),
    )
    .await
    .expect("the Sentinels name the master");
    let cached = TestApp::conformance_on(
        Settings::new(Store::RedisSentinel),
        AnyStorage::new(storage.clone()),
        |routes| routes,
    )
    .await;
    let cookie = cached.session_with(r#"{"a": 1}"#).await;
    // Past the lag that holds back this instance's own write, reads are
    // served from the cache.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    for _ in 0..3 {
        assert_eq!(
            cached.get("/session", Some(&cookie)).await.data(),
            json!({"a": 1})
        );
    }
    let before = storage.cache_statistics().expect("the cache is on");
    assert!(
        before.hits > 0,
        "the cache serves through Sentinel: {before:?}"
    );
    group.wait_for_replication();
    group.kill_master();
    // Another instance, started once the Sentinels name the new master
    // (an app cannot start without one; the Sentinels may refuse to name
    // it for a moment after the failover, while they agree on it).
    group.wait_for_failover();
    let mut settings = Settings::new(Store::RedisSentinel);
    settings.redis_url = group.urls();
    let deadline = Instant::now() + Duration::from_secs(20);
    let other_storage = loop {
        match settings.storage().await {
            Ok(storage) => break storage,
            Err(error) => assert!(Instant::now() < deadline, "{error}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let other = TestApp::conformance_on(settings, other_storage, |routes| routes).await;
    let (_, reply) = until_served(|| other.patch(Some(&cookie), r#"{"a": 2}"#)).await;
    assert_eq!(reply.status, 200);
    // The cache in use again on the new connection (its heartbeat
    // answered): reads of another session are served from it.
    let (_, probe) = until_served(|| cached.patch(None, r#"{"probe": 1}"#)).await;
    let probe = probe.new_cookie();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Counted since the new connection was made.
    while storage.cache_statistics().expect("the cache is on").hits == 0 {
        assert!(Instant::now() < deadline, "the cache never served again");
        let _ = cached.get("/session", Some(&probe)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = cached.get("/session", Some(&cookie)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.data(),
        json!({"a": 2}),
        "the other instance's change, not the old master's copy"
    );
}

/// With the master and its replica gone there is no master to fail over
/// to: every request that needs the store answers 503, and sets no cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_master_requests_fail_closed() {
    let mut group = RedisSentinels::start();
    let app = app(&group, false).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    group.kill_master();
    group.replica.stop();
    for _ in 0..20 {
        for reply in [
            app.get("/session", Some(&cookie)).await,
            app.patch(Some(&cookie), r#"{"a": 2}"#).await,
            app.patch(None, r#"{"a": 3}"#).await,
        ] {
            assert_eq!(reply.status, 503, "{}", reply.body);
            assert!(reply.set_cookies().is_empty());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
