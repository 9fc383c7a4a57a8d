//! What the sessions layer does, counted through the `metrics` facade
//! (feature `metrics`); without the feature every function here is empty
//! and nothing is compiled in.
//!
//! Every metric carries the labels `storage` (the storage's type name, such
//! as `RedisStorage`) and `kind` (the session kind's name, `session` for
//! the main one); none carries a session id, a user id or anything a
//! client sent.
//!
//! | metric | type | labels beside `storage` and `kind` |
//! |---|---|---|
//! | `sessions_loads_total` | counter | `outcome`: `found`, `new` (no cookie, or one naming nothing live), `error` |
//! | `sessions_saves_total` | counter | `outcome`: `written`, `removed` (an emptied session), `gone` (ended elsewhere meanwhile), `error` |
//! | `sessions_store_calls_total` | counter | `call` (`load`, `create`, `update`, `delete`), `outcome` (`ok`, `unavailable`, `timeout`, `refused`) |
//! | `sessions_store_call_seconds` | histogram | `call` |
//! | `sessions_cache_total` | counter | `storage` (`RedisStorage`) and `event` only: `hit`, `miss`, `invalidation` of Redis' local cache, and `bypassed` (a load its gate sent to Redis while the cache could be stale) |
//! | `sessions_store_retries_total` | counter | `storage` and `reason` only (a store does not know the layer's kind): `conflict`, a compare-and-swap that lost to another writer (Memcached) |

use crate::error::StorageError;

/// The labels every metric of one layer carries.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct Labels {
    pub(crate) storage: &'static str,
    pub(crate) kind: &'static str,
}

/// When a store call began; nothing at all without the feature, so no
/// clock is read on a request's path.
#[derive(Clone, Copy)]
pub(crate) struct Started(#[cfg(feature = "metrics")] std::time::Instant);

impl Started {
    #[inline(always)]
    pub(crate) fn now() -> Self {
        Self(
            #[cfg(feature = "metrics")]
            std::time::Instant::now(),
        )
    }
}

/// A store call's outcome, as the `outcome` label reads it.
#[cfg(feature = "metrics")]
fn call_outcome<T>(result: &Result<T, StorageError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(StorageError::Timeout(_)) => "timeout",
        Err(StorageError::Unavailable(_)) => "unavailable",
        Err(_) => "refused",
    }
}

/// Counts a store call and how long it took, from `started`.
#[cfg(feature = "metrics")]
pub(crate) fn store_call<T>(
    labels: Labels,
    call: &'static str,
    started: Started,
    result: &Result<T, StorageError>,
) {
    let Labels { storage, kind } = labels;
    metrics::counter!(
        "sessions_store_calls_total",
        "storage" => storage,
        "kind" => kind,
        "call" => call,
        "outcome" => call_outcome(result),
    )
    .increment(1);
    metrics::histogram!(
        "sessions_store_call_seconds",
        "storage" => storage,
        "kind" => kind,
        "call" => call,
    )
    .record(started.0.elapsed().as_secs_f64());
}

#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn store_call<T>(_: Labels, _: &'static str, _: Started, _: &Result<T, StorageError>) {}

/// Counts a request's load of its session.
#[cfg(feature = "metrics")]
pub(crate) fn loaded(labels: Labels, outcome: &'static str) {
    let Labels { storage, kind } = labels;
    metrics::counter!(
        "sessions_loads_total",
        "storage" => storage,
        "kind" => kind,
        "outcome" => outcome,
    )
    .increment(1);
}

#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn loaded(_: Labels, _: &'static str) {}

/// Counts a save after the handler.
#[cfg(feature = "metrics")]
pub(crate) fn saved(labels: Labels, outcome: &'static str) {
    let Labels { storage, kind } = labels;
    metrics::counter!(
        "sessions_saves_total",
        "storage" => storage,
        "kind" => kind,
        "outcome" => outcome,
    )
    .increment(1);
}

#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn saved(_: Labels, _: &'static str) {}

/// Publishes the counts of Redis' local cache (totals since the cache
/// began; a cluster's new connection after a failover starts them again,
/// which Prometheus reads as a counter reset).
#[cfg(all(feature = "metrics", feature = "redis"))]
pub(crate) fn cache_counts(statistics: &crate::storage::RedisCacheStatistics) {
    let wide = |count: usize| u64::try_from(count).unwrap_or(u64::MAX);
    for (event, count) in [
        ("hit", wide(statistics.hits)),
        ("miss", wide(statistics.misses)),
        ("invalidation", wide(statistics.invalidations)),
        ("bypassed", statistics.bypassed),
    ] {
        metrics::counter!(
            "sessions_cache_total",
            "storage" => "RedisStorage",
            "event" => event,
        )
        .absolute(count);
    }
}

/// Counts a store's retry of a write (its storage's name; a store does not
/// know the layer's kind).
#[cfg(feature = "metrics")]
#[cfg_attr(not(feature = "memcached"), allow(dead_code))]
pub(crate) fn retried(storage: &'static str, reason: &'static str) {
    metrics::counter!(
        "sessions_store_retries_total",
        "storage" => storage,
        "reason" => reason,
    )
    .increment(1);
}

#[cfg(not(feature = "metrics"))]
#[inline(always)]
#[cfg_attr(not(feature = "memcached"), allow(dead_code))]
pub(crate) fn retried(_: &'static str, _: &'static str) {}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use axum::Router;
    use axum::routing::get;
    use http::{Request, header};
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tower::ServiceExt as _;

    use crate::{MemoryStorage, Session, SessionLayer};

    async fn visit(session: Session) -> String {
        let visits = session.get::<u64>("visits").unwrap_or(0) + 1;
        session.insert("visits", visits).unwrap();
        visits.to_string()
    }

    #[test]
    fn loads_saves_and_store_calls_are_counted_with_no_id_in_any_label() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let cookie = metrics::with_local_recorder(&recorder, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let app = Router::new()
                    .route("/", get(visit))
                    .layer(SessionLayer::new(MemoryStorage::new()));
                let first = app
                    .clone()
                    .oneshot(Request::get("/").body(axum::body::Body::empty()).unwrap())
                    .await
                    .unwrap();
                let cookie = first.headers()[header::SET_COOKIE]
                    .to_str()
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap()
                    .to_owned();
                let second = Request::get("/")
                    .header(header::COOKIE, &cookie)
                    .body(axum::body::Body::empty())
                    .unwrap();
                app.oneshot(second).await.unwrap();
                cookie
            })
        });
        let snapshot = snapshotter.snapshot().into_vec();
        let value = |name: &str, labels: &[(&str, &str)]| {
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
                .sum::<u64>()
        };
        let ours = [("storage", "MemoryStorage"), ("kind", "session")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut labels = ours.to_vec();
            labels.extend_from_slice(extra);
            labels
        };
        assert_eq!(
            value("sessions_loads_total", &with(&[("outcome", "new")])),
            1
        );
        assert_eq!(
            value("sessions_loads_total", &with(&[("outcome", "found")])),
            1
        );
        assert_eq!(
            value("sessions_saves_total", &with(&[("outcome", "written")])),
            2
        );
        for call in ["load", "create", "update"] {
            assert_eq!(
                value(
                    "sessions_store_calls_total",
                    &with(&[("call", call), ("outcome", "ok")])
                ),
                1,
                "{call}"
            );
            assert_eq!(
                value("sessions_store_call_seconds", &with(&[("call", call)])),
                1,
                "{call}"
            );
        }
        let id = cookie.split_once('=').unwrap().1;
        for (key, ..) in &snapshot {
            for label in key.key().labels() {
                assert!(!label.value().contains(id), "{label:?}");
            }
        }
    }
}
