//! The layer's metrics against a real Redis with the local cache on: what
//! an operator's recorder sees after requests.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use session_examples::conformance::{Settings, Store};
use session_tests::TestApp;
use session_tests::servers::RedisServer;
use typed_sessions::RedisStorage;
use typed_sessions::storage::{AnyStorage, RedisCache, RedisOptions};

#[tokio::test]
async fn loads_saves_store_calls_and_cache_hits_reach_the_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).expect("the only recorder of this test binary");

    let redis = RedisServer::start();
    let storage =
        RedisStorage::connect(RedisOptions::standalone(redis.url()).with_cache(RedisCache::new()))
            .await
            .expect("Redis connects");
    let app = TestApp::conformance_on(
        Settings::new(Store::Redis),
        AnyStorage::new(storage),
        |routes| routes,
    )
    .await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    for _ in 0..5 {
        app.get("/session", Some(&cookie)).await;
        // Past the gate's wait after this instance's own write.
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }

    let snapshot = snapshotter.snapshot().into_vec();
    let value = |name: &str, labels: &[(&str, &str)]| -> u64 {
        snapshot
            .iter()
            .filter(|(key, ..)| key.key().name() == name)
            .filter(|(key, ..)| {
                labels.iter().all(|(label, value)| {
                    key.key()
                        .labels()
                        .any(|l| l.key() == *label && l.value() == *value)
                })
            })
            .map(|(.., value)| match value {
                DebugValue::Counter(count) => *count,
                DebugValue::Histogram(values) => values.len() as u64,
                DebugValue::Gauge(_) => 0,
            })
            .sum()
    };
    let ours = [("storage", "RedisStorage"), ("kind", "session")];
    let with = |extra: (&'static str, &'static str)| {
        let mut labels = ours.to_vec();
        labels.push(extra);
        labels
    };
    assert_eq!(
        value("sessions_loads_total", &with(("outcome", "found"))),
        5
    );
    assert_eq!(
        value("sessions_saves_total", &with(("outcome", "written"))),
        1
    );
    assert_eq!(
        value("sessions_store_call_seconds", &with(("call", "load"))),
        5
    );
    let hits = value("sessions_cache_total", &[("event", "hit")]);
    let misses = value("sessions_cache_total", &[("event", "miss")]);
    assert!(
        hits >= 1,
        "the cache served reads: {hits} hits, {misses} misses"
    );
    let id = cookie.as_str();
    for (key, ..) in &snapshot {
        for label in key.key().labels() {
            assert!(!label.value().contains(id), "{label:?}");
        }
    }
}
