//! What only the SQL stores do: their tables (made idempotently, by any
//! number of processes at once; names that are not plain identifiers
//! refused) and the deletion of expired rows, in batches, by a call or a
//! spawned task.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use session_tests::servers::{shared_mariadb, shared_postgres, sqlite_url};
use typed_sessions::{
    MySqlStorage, PostgresStorage, SessionLayer, SqliteStorage, StorageError,
    storage::{Changes, MaxAge, ServerStorage, SessionRecord, StorageContext},
};

/// A table name no other test uses.
fn unique_table(what: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{what}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

async fn postgres(table: &str) -> PostgresStorage {
    PostgresStorage::connect(&shared_postgres().url())
        .await
        .expect("the test server answers")
        .with_table_name(table)
}

async fn mysql(table: &str) -> MySqlStorage {
    MySqlStorage::connect(&shared_mariadb().url())
        .await
        .expect("the test server answers")
        .with_table_name(table)
}

/// Rows the tests write straight into a table: `expired` whose expiry
/// passed and `live` whose expiry is an hour away.
const EXPIRED: i64 = 2500;

async fn count(storage: &PostgresStorage, table: &str) -> i64 {
    let (rows,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM \"{table}\""))
        .fetch_one(storage.pool())
        .await
        .unwrap();
    rows
}

async fn fill_postgres(storage: &PostgresStorage, table: &str) {
    sqlx::query(&format!(
        "INSERT INTO \"{table}\" (id, expires_at, record) \
         SELECT 'expired' || n, now() - interval '1 second', '{{}}'::jsonb \
         FROM generate_series(1, $1) n \
         UNION ALL SELECT 'live', now() + interval '1 hour', '{{}}'::jsonb"
    ))
    .bind(EXPIRED)
    .execute(storage.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn postgres_deletes_expired_rows_in_batches_and_keeps_live_ones() {
    let table = unique_table("expiry");
    let storage = postgres(&table).await;
    storage.migrate().await.unwrap();
    fill_postgres(&storage, &table).await;

    assert_eq!(
        storage.delete_expired().await.unwrap(),
        EXPIRED.unsigned_abs(),
        "every expired row, over several batches"
    );
    assert_eq!(count(&storage, &table).await, 1, "the live row stays");
    assert_eq!(storage.delete_expired().await.unwrap(), 0);
}

#[tokio::test]
async fn postgres_expired_rows_go_by_themselves_with_the_spawned_task() {
    let table = unique_table("task");
    let storage = postgres(&table).await;
    storage.migrate().await.unwrap();
    fill_postgres(&storage, &table).await;

    let task = storage.spawn_expired_deletion(Duration::from_millis(50));
    let mut left = 0;
    for _ in 0..200 {
        left = count(&storage, &table).await;
        if left == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    assert_eq!(
        left, 1,
        "the task deleted the expired rows, not the live one"
    );
}

#[tokio::test]
async fn postgres_tables_are_made_once_whoever_asks_and_in_their_schema() {
    let table = unique_table("made");
    let schema = unique_table("schema");
    let storages: Vec<PostgresStorage> = futures_join(4, || {
        let (table, schema) = (table.clone(), schema.clone());
        async move { postgres(&table).await.with_schema(schema) }
    })
    .await;
    // Several processes starting at once all make the table.
    let made = futures_join(storages.len(), {
        let mut storages = storages.clone().into_iter();
        move || {
            let storage = storages.next().unwrap();
            async move { storage.migrate().await }
        }
    })
    .await;
    assert!(made.iter().all(Result::is_ok), "{made:?}");
    storages[0].migrate().await.expect("and again");
    let (found,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = $2")
            .bind(&schema)
            .bind(&table)
            .fetch_one(storages[0].pool())
            .await
            .unwrap();
    assert_eq!(found, 3, "the key, the expiry and the user indexes");
}

/// `n` futures from `make`, run at once; their outputs in order.
async fn futures_join<F, T>(n: usize, mut make: impl FnMut() -> F) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(make())).collect();
    let mut outputs = Vec::new();
    for task in tasks {
        outputs.push(task.await.unwrap());
    }
    outputs
}

#[tokio::test]
async fn names_that_are_not_plain_identifiers_are_refused_before_any_statement() {
    let bad = "sessions\"; DROP TABLE users; --";
    let storage = postgres(bad).await;
    let refused = storage.migrate().await;
    assert!(
        matches!(refused, Err(StorageError::Config(_))),
        "{refused:?}"
    );
    let message = SessionLayer::builder(postgres(bad).await)
        .build()
        .unwrap_err()
        .to_string();
    assert!(message.contains("plain identifier"), "{message}");
    let schema = postgres("sessions").await.with_schema("public.x");
    assert!(SessionLayer::builder(schema).build().is_err());

    let sqlite = SqliteStorage::connect(&sqlite_url())
        .await
        .unwrap()
        .with_table_name(bad);
    assert!(matches!(
        sqlite.migrate().await,
        Err(StorageError::Config(_))
    ));

    // Used directly, without a layer that checks them at build: every
    // call refuses before a statement runs.
    let cx = StorageContext::new("session", 1_700_000_000);
    let record = SessionRecord::new(1_700_000_000, MaxAge::Layer);
    let id = typed_sessions::storage::SessionId::generate();
    let postgres = postgres(bad).await;
    let mysql = mysql(bad).await;
    assert!(matches!(
        mysql.migrate().await,
        Err(StorageError::Config(_))
    ));
    for refused in [
        postgres.load(&id, &cx).await.map(drop),
        postgres.create(&record, &cx).await.map(drop),
        postgres
            .update(&id, &record, &Changes::default(), &cx)
            .await
            .map(drop),
        postgres.delete(&id, &cx).await.map(drop),
        postgres.revoke_user("ann", &cx).await.map(drop),
        postgres.delete_expired().await.map(drop),
        sqlite.load(&id, &cx).await.map(drop),
        sqlite.create(&record, &cx).await.map(drop),
        sqlite.delete(&id, &cx).await.map(drop),
        sqlite.revoke_user("ann", &cx).await.map(drop),
        sqlite.delete_expired().await.map(drop),
        mysql.load(&id, &cx).await.map(drop),
        mysql.create(&record, &cx).await.map(drop),
        mysql
            .update(&id, &record, &Changes::default(), &cx)
            .await
            .map(drop),
        mysql.delete(&id, &cx).await.map(drop),
        mysql.revoke_user("ann", &cx).await.map(drop),
        mysql.delete_expired().await.map(drop),
    ] {
        assert!(
            matches!(refused, Err(StorageError::Config(_))),
            "{refused:?}"
        );
    }
}

#[tokio::test]
async fn sqlite_deletes_expired_rows_in_batches_and_keeps_live_ones() {
    let storage = SqliteStorage::connect(&sqlite_url()).await.unwrap();
    storage.migrate().await.unwrap();
    storage.migrate().await.expect("twice is fine");
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
         INSERT INTO typed_sessions (id, expires_at, record) \
         SELECT 'expired' || i, unixepoch() - 1, '{}' FROM n \
         UNION ALL SELECT 'live', unixepoch() + 3600, '{}'",
    )
    .bind(EXPIRED)
    .execute(storage.pool())
    .await
    .unwrap();

    assert_eq!(
        storage.delete_expired().await.unwrap(),
        EXPIRED.unsigned_abs()
    );
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM typed_sessions")
        .fetch_one(storage.pool())
        .await
        .unwrap();
    assert_eq!(left, 1, "the live row stays");
}

/// A row whose expiry passed between a request's load and its save (the
/// deletion task has not run yet): loads never return it, and the save
/// neither revives it nor writes into it.
async fn an_expired_row_is_never_read_nor_revived<S: ServerStorage>(
    storage: &S,
    expire: impl AsyncFnOnce(&str),
    expires_at: impl AsyncFn(&str) -> i64,
) {
    let cx = StorageContext::new("id", 1_700_000_000);
    let mut record = SessionRecord::new(cx.now, MaxAge::Layer);
    record.data.insert("a".into(), 1.into());
    let id = storage.create(&record, &cx).await.unwrap();
    assert!(storage.load(&id, &cx).await.unwrap().is_some());

    let key = session_tests::record_key("", id.as_str());
    expire(&key).await;
    assert!(
        storage.load(&id, &cx).await.unwrap().is_none(),
        "an expired row is not loaded"
    );
    let expired_at = expires_at(&key).await;
    // A save that changed no key still moves the expiry: the guard is all
    // that keeps it from reviving the row.
    assert!(
        !storage
            .update(&id, &record, &Changes::default(), &cx)
            .await
            .unwrap(),
        "a save of an expired row reports it gone"
    );
    assert_eq!(expires_at(&key).await, expired_at, "and does not revive it");
}

#[tokio::test]
async fn postgres_never_reads_nor_revives_an_expired_row() {
    let table = unique_table("revive");
    let storage = postgres(&table).await;
    storage.migrate().await.unwrap();
    let pool = storage.pool().clone();
    an_expired_row_is_never_read_nor_revived(
        &storage,
        async |key| {
            sqlx::query(&format!(
                "UPDATE \"{table}\" SET expires_at = now() - interval '1 second' WHERE id = $1"
            ))
            .bind(key)
            .execute(&pool)
            .await
            .unwrap();
        },
        async |key| {
            let (at,): (i64,) = sqlx::query_as(&format!(
                "SELECT extract(epoch FROM expires_at)::bigint FROM \"{table}\" WHERE id = $1"
            ))
            .bind(key)
            .fetch_one(&pool)
            .await
            .unwrap();
            at
        },
    )
    .await;
}

#[tokio::test]
async fn sqlite_never_reads_nor_revives_an_expired_row() {
    let storage = SqliteStorage::connect(&sqlite_url()).await.unwrap();
    storage.migrate().await.unwrap();
    let pool = storage.pool().clone();
    an_expired_row_is_never_read_nor_revived(
        &storage,
        async |key| {
            sqlx::query("UPDATE typed_sessions SET expires_at = unixepoch() - 1 WHERE id = ?1")
                .bind(key)
                .execute(&pool)
                .await
                .unwrap();
        },
        async |key| {
            let (at,): (i64,) =
                sqlx::query_as("SELECT expires_at FROM typed_sessions WHERE id = ?1")
                    .bind(key)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            at
        },
    )
    .await;
}

/// The server stops a statement after the storage's command timeout, the
/// one the app set (it stayed at one second whatever the app chose), on
/// the connections made before the change too.
#[tokio::test]
async fn postgres_statements_stop_after_the_command_timeout_the_app_set() {
    let storage = PostgresStorage::connect(&shared_postgres().url())
        .await
        .expect("PostgreSQL connects");
    let shown = |storage: PostgresStorage| async move {
        let mut connections = Vec::new();
        let mut timeouts = Vec::new();
        // Every connection the pool hands out, the one `connect` opened too.
        for _ in 0..3 {
            let mut connection = storage.pool().acquire().await.expect("a connection");
            let (timeout,): (String,) = typed_sessions::sqlx::query_as("SHOW statement_timeout")
                .fetch_one(&mut *connection)
                .await
                .expect("SHOW answers");
            timeouts.push(timeout);
            connections.push(connection);
        }
        timeouts
    };
    assert_eq!(shown(storage.clone()).await, ["1s", "1s", "1s"]);
    let storage = storage.with_command_timeout(Duration::from_millis(2500));
    assert_eq!(shown(storage).await, ["2500ms", "2500ms", "2500ms"]);
}

#[tokio::test]
async fn mysql_deletes_expired_rows_in_batches_and_keeps_live_ones() {
    let table = unique_table("expiry");
    let storage = mysql(&table).await;
    storage.migrate().await.unwrap();
    storage.migrate().await.expect("twice is fine");
    // MariaDB's sequence tables (`seq_1_to_N`) count the rows.
    sqlx::query(&format!(
        "INSERT INTO `{table}` (id, expires_at, record) \
         SELECT CONCAT('expired', seq), UNIX_TIMESTAMP() - 1, '{{}}' FROM seq_1_to_{EXPIRED} \
         UNION ALL SELECT 'live', UNIX_TIMESTAMP() + 3600, '{{}}'"
    ))
    .execute(storage.pool())
    .await
    .unwrap();

    assert_eq!(
        storage.delete_expired().await.unwrap(),
        EXPIRED.unsigned_abs()
    );
    let (left,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM `{table}`"))
        .fetch_one(storage.pool())
        .await
        .unwrap();
    assert_eq!(left, 1, "the live row stays");
}

#[tokio::test]
async fn mysql_tables_are_made_once_whoever_asks() {
    let table = unique_table("made");
    let storages: Vec<MySqlStorage> = futures_join(4, || {
        let table = table.clone();
        async move { mysql(&table).await }
    })
    .await;
    let made = futures_join(4, {
        let mut storages = storages.clone().into_iter();
        move || {
            let storage = storages.next().unwrap();
            async move { storage.migrate().await }
        }
    })
    .await;
    for made in made {
        made.expect("every process's migrate succeeds");
    }
    let (indexes,): (i64,) = sqlx::query_as(
        "SELECT count(DISTINCT index_name) FROM information_schema.statistics \
         WHERE table_schema = DATABASE() AND table_name = ?",
    )
    .bind(&table)
    .fetch_one(storages[0].pool())
    .await
    .unwrap();
    assert_eq!(indexes, 3, "the key, the expiry and the user");
}

#[tokio::test]
async fn mysql_never_reads_nor_revives_an_expired_row() {
    let table = unique_table("revive");
    let storage = mysql(&table).await;
    storage.migrate().await.unwrap();
    let pool = storage.pool().clone();
    an_expired_row_is_never_read_nor_revived(
        &storage,
        async |key| {
            sqlx::query(&format!(
                "UPDATE `{table}` SET expires_at = UNIX_TIMESTAMP() - 1 WHERE id = ?"
            ))
            .bind(key)
            .execute(&pool)
            .await
            .unwrap();
        },
        async |key| {
            let (at,): (i64,) =
                sqlx::query_as(&format!("SELECT expires_at FROM `{table}` WHERE id = ?"))
                    .bind(key)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            at
        },
    )
    .await;
}

/// MariaDB stops a statement after the storage's command timeout, the one
/// the app set, on the connections made before the change too.
#[tokio::test]
async fn mysql_statements_stop_after_the_command_timeout_the_app_set() {
    let storage = MySqlStorage::connect(&shared_mariadb().url())
        .await
        .expect("MariaDB connects");
    let shown = |storage: MySqlStorage| async move {
        let mut connections = Vec::new();
        let mut timeouts = Vec::new();
        for _ in 0..3 {
            let mut connection = storage.pool().acquire().await.expect("a connection");
            let (timeout,): (f64,) =
                typed_sessions::sqlx::query_as("SELECT @@SESSION.max_statement_time")
                    .fetch_one(&mut *connection)
                    .await
                    .expect("the variable answers");
            timeouts.push(timeout);
            connections.push(connection);
        }
        timeouts
    };
    assert_eq!(shown(storage.clone()).await, [1.0, 1.0, 1.0]);
    let storage = storage.with_command_timeout(Duration::from_millis(2500));
    assert_eq!(shown(storage).await, [2.5, 2.5, 2.5]);
}

/// User ids compare byte for byte: under MySQL's text collations `Ann`
/// would be `ann`, and `ann ` would be `ann`, and one user's listing and
/// revocation would reach another's sessions.
#[tokio::test]
async fn mysql_keeps_users_that_differ_in_case_or_trailing_spaces_apart() {
    let table = unique_table("users");
    let storage = mysql(&table).await;
    storage.migrate().await.unwrap();
    let cx = StorageContext::new("session", 1_700_000_000);
    for user in ["ann", "Ann", "ann "] {
        let mut record = SessionRecord::new(cx.now, MaxAge::Layer);
        record.user = Some(user.into());
        storage.create(&record, &cx).await.unwrap();
    }
    for user in ["ann", "Ann", "ann "] {
        let listed = storage.sessions_of(user, &cx).await.unwrap();
        assert_eq!(listed.len(), 1, "{user:?} sees only their own session");
    }
    assert_eq!(storage.revoke_user("ann", &cx).await.unwrap(), Some(1));
    assert_eq!(storage.sessions_of("Ann", &cx).await.unwrap().len(), 1);
    assert_eq!(storage.sessions_of("ann ", &cx).await.unwrap().len(), 1);
}

/// MariaDB's JSON functions give up past 32 levels of nesting (and merge
/// objects, dropping their `null`s): a merge beside a value as deep as any
/// store takes keeps every key, and values read back exactly.
#[tokio::test]
async fn mysql_merges_beside_the_deepest_values_and_keeps_every_key() {
    use serde_json::{Value, json};
    use session_tests::{Store, TestApp, settings};

    let app = TestApp::conformance(settings(Store::MySql)).await;
    let limit = typed_sessions::storage::MAX_VALUE_DEPTH;
    let nested = |levels: usize| (0..levels).fold(json!(1), |inner, _| Value::Array(vec![inner]));
    let cookie = app.session_with(r#"{"a": {"x": null, "y": 1}}"#).await;
    let reply = app
        .patch(Some(&cookie), &json!({ "deep": nested(limit) }).to_string())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let cookie = reply.new_cookie();
    let reply = app
        .patch(Some(&cookie), r#"{"b": 2, "a": {"x": null}}"#)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let cookie = reply.new_cookie();
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"a": {"x": null}, "b": 2, "deep": nested(limit)}),
        "an object is replaced whole, its nulls kept, and the deep value stays"
    );
}

/// A save that changes many keys of a wide session merges in a
/// transaction: two at once, on different keys, both keep their change.
#[tokio::test]
async fn mysql_wide_merges_at_once_keep_both_changes() {
    use serde_json::{Map, Value, json};
    use session_tests::{Store, TestApp, settings};

    let app = TestApp::conformance(settings(Store::MySql)).await;
    let keys = |range: std::ops::Range<usize>, value: Value| -> String {
        let map: Map<String, Value> = range.map(|i| (format!("k{i}"), value.clone())).collect();
        Value::Object(map).to_string()
    };
    let cookie = app.session_with(&keys(0..1_000, json!(0))).await;
    let (first, second) = (
        keys(0..500, json!("first")),
        keys(500..1_000, json!("second")),
    );
    let (first, second) = tokio::join!(
        app.patch(Some(&cookie), &first),
        app.patch(Some(&cookie), &second),
    );
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(second.status, 200, "{}", second.body);
    let data = app.get("/session", Some(&cookie)).await.data();
    let data = data.as_object().unwrap();
    assert_eq!(data.len(), 1_000);
    assert!(
        (0..500).all(|i| data[&format!("k{i}")] == "first")
            && (500..1_000).all(|i| data[&format!("k{i}")] == "second"),
        "every key of both saves is kept"
    );
}
