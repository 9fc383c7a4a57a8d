//! Round trips to Redis, Memcached and PostgreSQL, counted by the servers
//! themselves (PostgreSQL: by `pg_stat_statements`, every statement on the
//! test's own table)
//! around N requests: every command Redis ran (`INFO commandstats`, which
//! counts the commands of a script too) and every command counter of
//! Memcached (`stats`), each compared whole with what one request of each
//! kind should cost. Each test has servers of its own, so nothing else is
//! counted; connections and scripts are set up before counting starts, so
//! what is counted is the steady state of a request, and a reconnect in
//! the middle would show.

use serde_json::json;
use session_examples::conformance::Store;
use session_tests::counters::{
    Calls, MemcachedCalls, MySqlCalls, PostgresCalls, RedisCalls, calls,
};
use session_tests::servers::{MariaDb, Memcached, RedisCluster, RedisServer};
use session_tests::{TestApp, settings};
use typed_sessions::RedisStorage;
use typed_sessions::storage::{AnyStorage, RedisOptions};

const N: u64 = 20;

/// The conformance app on Redis at `urls` (one URL: standalone; several:
/// cluster seed nodes).
async fn redis_app(urls: &[String], refresh_on_read: bool) -> TestApp {
    let storage = match urls {
        [url] => RedisStorage::connect(url).await,
        nodes => RedisStorage::connect(RedisOptions::cluster(nodes)).await,
    };
    let storage = storage.unwrap().with_ttl_refresh_on_read(refresh_on_read);
    TestApp::conformance_on(settings(Store::Redis), AnyStorage::new(storage), |routes| {
        routes
    })
    .await
}

/// N requests `send(i)`, each answered 200; panics with the body of the
/// first that is not.
macro_rules! n_times {
    ($i:ident => $send:expr) => {
        for $i in 0..N {
            let reply = $send;
            assert_eq!(reply.status, 200, "request {}: {}", $i, reply.body);
        }
    };
}

/// What every kind of request costs on Redis (standalone or cluster at
/// `ports`), command by command.
async fn redis_costs(urls: &[String], ports: &[u16]) {
    let app = redis_app(urls, false).await;
    let refreshing = redis_app(urls, true).await;

    // Every script is loaded on every node before counting starts: on the
    // first use of a script on a node the client sends `SCRIPT LOAD` and
    // then `EVALSHA` again, a one-off cost. Random ids put new sessions on
    // random nodes, so this goes on until each node has loaded the four
    // (`CREATE`, `UPDATE`, `LOAD_AND_REFRESH`, `DELETE`).
    let mut warm_up = RedisCalls::new(ports);
    let mut loaded = 0;
    for _ in 0..200 {
        let cookie = app.session_with(r#"{"count": 0}"#).await;
        app.post("/session/incr?key=count", Some(&cookie), "").await;
        refreshing.get("/session", Some(&cookie)).await;
        app.post("/session/invalidate", Some(&cookie), "").await;
        loaded += warm_up
            .since_last()
            .get("script|load")
            .copied()
            .unwrap_or(0);
        if loaded == 4 * ports.len() as u64 {
            break;
        }
    }
    assert_eq!(
        loaded,
        4 * ports.len() as u64,
        "four scripts loaded on each node"
    );
    let cookie = app.session_with(r#"{"count": 0}"#).await;

    let mut counter = RedisCalls::new(ports);
    let mut cost = |what: &str, expected: Calls| {
        assert_eq!(counter.since_last(), expected, "{what}");
    };

    n_times!(_i => app.get("/untouched", Some(&cookie)).await);
    cost("an untouched session costs nothing", calls(&[]));

    n_times!(_i => app.get("/session", Some(&cookie)).await);
    cost("a read is one HGETALL", calls(&[("hgetall", N)]));

    n_times!(_i => {
        app.clock.advance(16 * 60);
        app.get("/session", Some(&cookie)).await
    });
    cost(
        "a read past half the idle timeout is the HGETALL and one script \
         that writes the times",
        calls(&[
            ("hgetall", N),
            ("evalsha", N),
            ("time", N),
            ("expire", N),
            ("hset", N),
            ("hdel", N),
        ]),
    );

    n_times!(i => {
        let reply = app.post("/session/incr?key=count", Some(&cookie), "").await;
        assert_eq!(reply.json()["value"], json!(i + 1));
        reply
    });
    cost(
        "a write is one HGETALL to load and one script to save, which \
         reads Redis' clock for its deadline (TIME), checks the record \
         exists (EXPIRE), sets the changed key and deletes the max age \
         field of a session without one",
        calls(&[
            ("hgetall", N),
            ("evalsha", N),
            ("time", N),
            ("expire", N),
            ("hset", N),
            ("hdel", N),
        ]),
    );

    let mut fresh = Vec::new();
    n_times!(_i => {
        let reply = app.post("/session/incr?key=count", None, "").await;
        fresh.push(reply.new_cookie());
        reply
    });
    cost(
        "a new session loads nothing and is one script that checks its \
         deadline, that the id is free, writes the record and sets its \
         expiry",
        calls(&[
            ("evalsha", N),
            ("time", N),
            ("exists", N),
            ("hset", N),
            ("expire", N),
        ]),
    );

    let mut bound = Vec::new();
    n_times!(i => {
        let reply = app
            .post("/session/bind", Some(&fresh[i as usize]), &format!(r#"{{"user": "user-{i}"}}"#))
            .await;
        bound.push(reply.new_cookie());
        reply
    });
    cost(
        "binding a user loads the session and renews it: the new record (a \
         script), its entry in the user's set (a pipeline on one key) and \
         the old record's deletion (a script, with its deadline too, which \
         reads whether the record is bound)",
        calls(&[
            ("hgetall", N),
            ("evalsha", 2 * N),
            ("time", 2 * N),
            ("exists", N),
            ("hset", N),
            ("expire", 2 * N),
            ("sadd", N),
            ("scard", N),
            ("hmget", N),
            ("del", N),
        ]),
    );
    n_times!(i => app.get("/session", Some(&bound[i as usize])).await);
    cost(
        "a read of a bound session is still one HGETALL",
        calls(&[("hgetall", N)]),
    );

    n_times!(i => app.post("/session/invalidate", Some(&bound[i as usize]), "").await);
    cost(
        "a logout of a bound session loads it, then four round trips: the \
         deletion script answers the user and leaves the record, the key \
         moves from the user's index to its deletions under way (SMOVE), \
         the script deletes the record, and the key is let go of (SREM)",
        calls(&[
            ("hgetall", N),
            ("evalsha", 2 * N),
            ("time", 2 * N),
            ("hmget", 2 * N),
            ("smove", N),
            ("del", N),
            ("srem", N),
        ]),
    );

    n_times!(_i => {
        let reply = refreshing.get("/session", Some(&cookie)).await;
        assert_eq!(reply.data(), json!({"count": N}));
        reply
    });
    cost(
        "a read with TTL refresh is one script that reads the record and \
         its TTL, moves its last activity and sets its expiry again",
        calls(&[
            ("evalsha", N),
            ("hgetall", N),
            ("hget", N),
            ("hset", N),
            ("expire", N),
        ]),
    );
}

#[tokio::test]
async fn every_redis_command_of_each_kind_of_request() {
    let server = RedisServer::start();
    redis_costs(&[server.url()], &[server.port]).await;
}

#[tokio::test]
async fn every_redis_cluster_command_of_each_kind_of_request() {
    // A cluster of its own: the shared one counts other tests' commands.
    let cluster = RedisCluster::start();
    let urls: Vec<String> = cluster.url().split(',').map(str::to_owned).collect();
    redis_costs(&urls, &cluster.ports).await;
}

#[tokio::test]
async fn every_memcached_command_of_each_kind_of_request() {
    let server = Memcached::start();
    let mut settings = settings(Store::Memcached);
    settings.memcached_servers = vec![server.addr()];
    let app = TestApp::conformance(settings).await;
    let cookie = app.session_with(r#"{"count": 0}"#).await;

    let mut counter = MemcachedCalls::new(server.port);
    let mut cost = |what: &str, expected: Calls| {
        assert_eq!(counter.since_last(), expected, "{what}");
    };

    n_times!(_i => app.get("/untouched", Some(&cookie)).await);
    cost("an untouched session costs nothing", calls(&[]));

    n_times!(_i => app.get("/session", Some(&cookie)).await);
    cost(
        "a read is one get that finds the item",
        calls(&[("cmd_get", N), ("get_hits", N)]),
    );

    n_times!(_i => {
        app.clock.advance(16 * 60);
        app.get("/session", Some(&cookie)).await
    });
    cost(
        "a read past half the idle timeout is the get and one set of the \
         record with new times, with the loaded CAS",
        calls(&[
            ("cmd_get", N),
            ("get_hits", N),
            ("cmd_set", N),
            ("cas_hits", N),
        ]),
    );

    n_times!(i => {
        let reply = app.post("/session/incr?key=count", Some(&cookie), "").await;
        assert_eq!(reply.json()["value"], json!(i + 1));
        reply
    });
    cost(
        "a write is one get to load and one set with the loaded CAS",
        calls(&[
            ("cmd_get", N),
            ("get_hits", N),
            ("cmd_set", N),
            ("cas_hits", N),
        ]),
    );

    let mut fresh = Vec::new();
    n_times!(_i => {
        let reply = app.post("/session/incr?key=count", None, "").await;
        fresh.push(reply.new_cookie());
        reply
    });
    cost(
        "a new session loads nothing and is one add",
        calls(&[("cmd_set", N)]),
    );
}

#[tokio::test]
async fn every_postgres_statement_of_each_kind_of_request() {
    let mut settings = settings(Store::Postgres);
    let table = format!("round_trips_{}", std::process::id());
    settings.table_name = Some(table.clone());
    let url = settings.database_url.clone();
    let app = TestApp::conformance(settings).await;
    let cookie = app.session_with(r#"{"count": 0}"#).await;

    let mut counter = PostgresCalls::new(&url, &table);
    let mut cost = |what: &str, expected: Calls| {
        assert_eq!(counter.since_last(), expected, "{what}");
    };

    n_times!(_i => app.get("/untouched", Some(&cookie)).await);
    cost("an untouched session costs nothing", calls(&[]));

    n_times!(_i => app.get("/session", Some(&cookie)).await);
    cost("a read is one SELECT", calls(&[("select", N)]));

    n_times!(_i => {
        app.clock.advance(16 * 60);
        app.get("/session", Some(&cookie)).await
    });
    cost(
        "a read past half the idle timeout is the SELECT and one UPDATE of \
         the times",
        calls(&[("select", N), ("update", N)]),
    );

    n_times!(_i => app.post("/session/incr?key=count", Some(&cookie), "").await);
    cost(
        "a change is the read and one UPDATE that merges it",
        calls(&[("select", N), ("update", N)]),
    );
    let reply = app.get("/session", Some(&cookie)).await;
    assert_eq!(reply.data(), json!({"count": N}), "every change was saved");
    cost("the check is one SELECT", calls(&[("select", 1)]));

    let mut fresh = Vec::new();
    n_times!(_i => {
        let reply = app.patch(None, r#"{"a": 1}"#).await;
        fresh.push(reply.new_cookie());
        reply
    });
    cost("a new session is one INSERT", calls(&[("insert", N)]));

    n_times!(i => app.post("/session/invalidate", Some(&fresh[i as usize]), "").await);
    cost(
        "invalidating is the read and one DELETE",
        calls(&[("select", N), ("delete", N)]),
    );
}

#[tokio::test]
async fn every_mysql_statement_of_each_kind_of_request() {
    // A server of its own: the counter counts every client's statements.
    let server = MariaDb::start();
    let mut settings = settings(Store::MySql);
    settings.database_url = server.url();
    let table = format!("round_trips_{}", std::process::id());
    settings.table_name = Some(table.clone());
    let app = TestApp::conformance(settings).await;
    let cookie = app.session_with(r#"{"count": 0}"#).await;

    let mut counter = MySqlCalls::new(&server.url());
    let mut cost = |what: &str, expected: Calls| {
        assert_eq!(counter.since_last(), expected, "{what}");
    };

    n_times!(_i => app.get("/untouched", Some(&cookie)).await);
    cost("an untouched session costs nothing", calls(&[]));

    n_times!(_i => app.get("/session", Some(&cookie)).await);
    cost("a read is one SELECT", calls(&[("select", N)]));

    n_times!(_i => app.post("/session/incr?key=count", Some(&cookie), "").await);
    cost(
        "a change is the read and one UPDATE that merges it",
        calls(&[("select", N), ("update", N)]),
    );
    let reply = app.get("/session", Some(&cookie)).await;
    assert_eq!(reply.data(), json!({"count": N}), "every change was saved");
    cost("the check is one SELECT", calls(&[("select", 1)]));

    let mut fresh = Vec::new();
    n_times!(_i => {
        let reply = app.patch(None, r#"{"a": 1}"#).await;
        fresh.push(reply.new_cookie());
        reply
    });
    cost("a new session is one INSERT", calls(&[("insert", N)]));

    n_times!(i => app.post("/session/invalidate", Some(&fresh[i as usize]), "").await);
    cost(
        "invalidating is the read and one DELETE",
        calls(&[("select", N), ("delete", N)]),
    );
}

/// What a login (binding a session) and "log out everywhere" cost on
/// Redis for a user who already has 1, 64 and 1,000 live sessions: the
/// figures of the README's "Your active sessions" section. A login costs
/// the same whatever the user keeps; a revocation is three round trips
/// (the script, every record's DEL at once, one SREM) whose DELs grow with
/// the sessions it ends.
#[tokio::test]
async fn login_and_revocation_costs_for_1_64_and_1000_sessions() {
    let server = RedisServer::start();
    let app = redis_app(&[server.url()], false).await;
    let mut counter = RedisCalls::new(&[server.port]);
    let login = |user: String| {
        let app = &app;
        async move {
            app.login(&user).await;
        }
    };
    // The scripts loaded once.
    login("warm-up".into()).await;
    app.post("/users/warm-up/revoke", None, "").await;
    let mut lines = Vec::new();
    for sessions in [1u64, 64, 1000] {
        let user = format!("user-of-{sessions}");
        for _ in 0..sessions {
            login(user.clone()).await;
        }
        counter.since_last();
        login(user.clone()).await;
        let login_cost = counter.since_last();
        let reply = app.post(&format!("/users/{user}/revoke"), None, "").await;
        assert_eq!(reply.json(), json!({ "revoked": sessions + 1 }));
        let revoke_cost = counter.since_last();
        let commands = |calls: &session_tests::counters::Calls| {
            calls
                .iter()
                .filter(|(name, _)| *name != "info")
                .map(|(_, n)| n)
                .sum::<u64>()
        };
        lines.push(format!(
            "{sessions} sessions: login {} commands {login_cost:?}; revoke {} commands, of which {} DEL",
            commands(&login_cost),
            commands(&revoke_cost),
            revoke_cost.get("del").copied().unwrap_or(0),
        ));
        // The new session's own PATCH, then the bind: the same commands
        // whatever the user's history.
        assert_eq!(
            login_cost,
            calls(&[
                ("evalsha", 3),
                ("time", 3),
                ("exists", 2),
                ("hset", 2),
                ("expire", 3),
                ("sadd", 1),
                ("scard", 1),
                ("hgetall", 1),
                ("hmget", 1),
                ("del", 1),
            ]),
            "a login of a user with {sessions} sessions"
        );
        // The script (with SUNIONSTORE, DEL, EXISTS, EXPIRE and SMEMBERS
        // inside), one DEL per session, one SREM.
        assert_eq!(revoke_cost.get("del").copied(), Some(sessions + 1 + 1));
        assert_eq!(revoke_cost.get("evalsha").copied(), Some(1));
        assert_eq!(revoke_cost.get("srem").copied(), Some(1));
    }
    println!("{}", lines.join("\n"));
}
