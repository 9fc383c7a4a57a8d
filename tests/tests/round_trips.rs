//! Round trips to Redis and Memcached, counted by the servers themselves
//! (`INFO commandstats`, `stats`) around N requests: none for a request that
//! does not use its session, one for a load, one for a save.

use session_examples::conformance::Store;
use session_tests::servers::{Memcached, RedisServer};
use session_tests::{TestApp, settings};
use typed_sessions::{AnyStorage, RedisStorage};

const N: u64 = 20;

/// Calls of each command since the last `CONFIG RESETSTAT`, for the
/// commands this crate sends (commands run inside a script are counted by
/// Redis too: `hgetall` is top-level only when no script reads).
struct RedisCalls {
    hgetall: u64,
    evalsha: u64,
    eval: u64,
    other_data_commands: u64,
}

fn redis_calls(server: &RedisServer) -> RedisCalls {
    let stats = server.command("INFO commandstats");
    let calls = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{name}:calls=")))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0)
    };
    let bookkeeping = [
        "config|resetstat",
        "info",
        "quit",
        "ping",
        "hello",
        "client|setinfo",
        "select",
    ];
    let everything: u64 = stats
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            let count: u64 = rest.split(',').next()?.parse().ok()?;
            (!bookkeeping.contains(&name)).then_some(count)
        })
        .sum();
    let (hgetall, evalsha, eval) = (calls("hgetall"), calls("evalsha"), calls("eval"));
    RedisCalls {
        hgetall,
        evalsha,
        eval,
        other_data_commands: everything.saturating_sub(hgetall + evalsha + eval),
    }
}

async fn redis_app(server: &RedisServer, refresh_on_read: bool) -> TestApp {
    let storage = RedisStorage::connect(&server.url())
        .await
        .unwrap()
        .with_ttl_refresh_on_read(refresh_on_read);
    TestApp::conformance_on(settings(Store::Redis), AnyStorage::new(storage), |routes| {
        routes
    })
    .await
}

#[tokio::test]
async fn redis_costs_nothing_untouched_one_round_trip_to_load_and_one_to_save() {
    let server = RedisServer::start();
    let app = redis_app(&server, false).await;
    // The first save loads the scripts into Redis; count the steady state.
    let cookie = app.session_with(r#"{"count": 0}"#).await;
    app.post("/session/incr?key=count", Some(&cookie), "").await;

    server.command("CONFIG RESETSTAT");
    for _ in 0..N {
        assert_eq!(app.get("/untouched", Some(&cookie)).await.status, 200);
    }
    let calls = redis_calls(&server);
    assert_eq!(
        (
            calls.hgetall,
            calls.evalsha + calls.eval + calls.other_data_commands
        ),
        (0, 0),
        "untouched"
    );

    server.command("CONFIG RESETSTAT");
    for _ in 0..N {
        assert_eq!(app.get("/session", Some(&cookie)).await.status, 200);
    }
    let calls = redis_calls(&server);
    assert_eq!(calls.hgetall, N, "one HGETALL per read-only request");
    assert_eq!(
        calls.evalsha + calls.eval + calls.other_data_commands,
        0,
        "a read writes nothing"
    );

    server.command("CONFIG RESETSTAT");
    for _ in 0..N {
        assert_eq!(
            app.post("/session/incr?key=count", Some(&cookie), "")
                .await
                .status,
            200
        );
    }
    let calls = redis_calls(&server);
    assert_eq!(calls.hgetall, N, "one round trip to load");
    assert_eq!(calls.evalsha, N, "one round trip to save");
    assert_eq!(calls.eval, 0, "the script is cached: EVALSHA, not EVAL");

    server.command("CONFIG RESETSTAT");
    for _ in 0..N {
        assert_eq!(
            app.post("/session/incr?key=count", None, "").await.status,
            200
        );
    }
    let calls = redis_calls(&server);
    assert_eq!(
        (calls.hgetall, calls.evalsha),
        (0, N),
        "no cookie: no load, one save"
    );
}

#[tokio::test]
async fn redis_ttl_refresh_on_read_costs_one_round_trip_per_read() {
    let server = RedisServer::start();
    let app = redis_app(&server, true).await;
    let cookie = app.session_with(r#"{"count": 0}"#).await;
    app.get("/session", Some(&cookie)).await;

    server.command("CONFIG RESETSTAT");
    for _ in 0..N {
        let reply = app.get("/session", Some(&cookie)).await;
        assert!(reply.set_cookies().is_empty());
    }
    assert_eq!(
        redis_calls(&server).evalsha,
        N,
        "one script per read, which reads and refreshes"
    );
}

/// Memcached's own counters of reads and writes.
fn memcached_counts(server: &Memcached) -> (u64, u64) {
    let stats = server.stats();
    let stat = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("STAT {name} ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        stat("cmd_get"),
        stat("cmd_set") + stat("cmd_touch") + stat("delete_hits") + stat("delete_misses"),
    )
}

#[tokio::test]
async fn memcached_costs_nothing_untouched_one_round_trip_to_load_and_one_to_save() {
    let server = Memcached::start();
    let mut settings = settings(Store::Memcached);
    settings.memcached_servers = vec![server.addr()];
    let app = TestApp::conformance(settings).await;
    let cookie = app.session_with(r#"{"count": 0}"#).await;

    let measure = |before: (u64, u64)| {
        let after = memcached_counts(&server);
        (after.0 - before.0, after.1 - before.1)
    };

    let before = memcached_counts(&server);
    for _ in 0..N {
        app.get("/untouched", Some(&cookie)).await;
    }
    assert_eq!(measure(before), (0, 0), "untouched");

    let before = memcached_counts(&server);
    for _ in 0..N {
        app.get("/session", Some(&cookie)).await;
    }
    assert_eq!(
        measure(before),
        (N, 0),
        "one get per read-only request, no write"
    );

    let before = memcached_counts(&server);
    for _ in 0..N {
        app.post("/session/incr?key=count", Some(&cookie), "").await;
    }
    assert_eq!(
        measure(before),
        (N, N),
        "one get to load, one cas write to save"
    );

    let before = memcached_counts(&server);
    for _ in 0..N {
        app.post("/session/incr?key=count", None, "").await;
    }
    assert_eq!(measure(before), (0, N), "no cookie: no load, one add");
}
