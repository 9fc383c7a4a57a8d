//! TLS to Redis, against a real `redis-server` speaking TLS with a
//! certificate of a CA the test makes: the CA file is trusted beside the
//! system's roots, a certificate nothing trusts is an error at connect
//! (never a silent plaintext connection), and a server that requires a
//! client certificate gets one; the same over Redis Cluster and Sentinel,
//! and on PostgreSQL and MariaDB.

use serde_json::json;
use session_examples::conformance::{Settings, Store};
use session_tests::TestApp;
use session_tests::servers::TlsRedis;
use typed_sessions::RedisStorage;
use typed_sessions::storage::{AnyStorage, RedisOptions};

async fn sessions_work_over(storage: RedisStorage) {
    let app = TestApp::conformance_on(
        Settings::new(Store::Redis),
        AnyStorage::new(storage),
        |routes| routes,
    )
    .await;
    let cookie = app.session_with(r#"{"over": "tls"}"#).await;
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"over": "tls"})
    );
}

#[tokio::test]
async fn redis_over_tls_trusts_the_ca_file_and_refuses_what_nothing_trusts() {
    let redis = TlsRedis::start(false);
    // A certificate of a CA neither the system nor the app trusts.
    let refused = RedisStorage::connect(RedisOptions::standalone(redis.url()))
        .await
        .expect_err("an untrusted certificate is refused at connect");
    let message = session_examples::conformance::typed_sessions_error_chain(&refused);
    assert!(
        message.contains("certificate") || message.contains("Certificate"),
        "says why: {message}"
    );

    let storage = RedisStorage::connect(
        RedisOptions::standalone(redis.url()).with_ca_file(&redis.certificates.ca),
    )
    .await
    .expect("the CA file is trusted");
    sessions_work_over(storage).await;

    // The plaintext port never stands in for TLS: a CA file without a
    // `rediss://` URL is a configuration error.
    let plain = format!("redis://127.0.0.1:{}/0", redis.port);
    let refused =
        RedisStorage::connect(RedisOptions::standalone(plain).with_ca_file(&redis.certificates.ca))
            .await
            .expect_err("TLS settings need rediss://");
    assert!(refused.to_string().contains("rediss://"), "{refused}");
}

#[tokio::test]
async fn redis_requiring_client_certificates_gets_one() {
    let redis = TlsRedis::start(true);
    let without = RedisStorage::connect(
        RedisOptions::standalone(redis.url()).with_ca_file(&redis.certificates.ca),
    )
    .await;
    assert!(
        without.is_err(),
        "the server refuses a client without a certificate"
    );

    let (certificate, key) = &redis.certificates.client;
    let storage = RedisStorage::connect(
        RedisOptions::standalone(redis.url())
            .with_ca_file(&redis.certificates.ca)
            .with_client_certificate(certificate, key),
    )
    .await
    .expect("the client certificate is accepted");
    sessions_work_over(storage).await;
}

/// A Redis Cluster whose clients and cluster bus speak TLS and require a
/// client certificate: the storage verifies every node against the CA file
/// (the seeds and the nodes it is redirected to), presents its client
/// certificate to each, and refuses the cluster without them.
#[tokio::test]
async fn redis_cluster_over_tls_with_client_certificates() {
    use session_tests::servers::RedisCluster;

    let cluster = RedisCluster::start_tls();
    let certificates = cluster.certificates.as_ref().expect("a TLS cluster");
    let nodes: Vec<String> = cluster.url().split(',').map(str::to_owned).collect();
    let (certificate, key) = &certificates.client;

    let refused = RedisStorage::connect(
        RedisOptions::cluster(nodes.clone()).with_client_certificate(certificate, key),
    )
    .await
    .expect_err("a certificate nothing trusts is refused at connect");
    let message = session_examples::conformance::typed_sessions_error_chain(&refused);
    assert!(
        message.to_lowercase().contains("certificate"),
        "says why: {message}"
    );
    let without =
        RedisStorage::connect(RedisOptions::cluster(nodes.clone()).with_ca_file(&certificates.ca))
            .await;
    assert!(
        without.is_err(),
        "the nodes refuse a client without a certificate"
    );

    let storage = RedisStorage::connect(
        RedisOptions::cluster(nodes)
            .with_ca_file(&certificates.ca)
            .with_client_certificate(certificate, key),
    )
    .await
    .expect("the nodes are verified and accept the client certificate");
    // Twelve sessions spread over the three nodes' slots (the client also
    // connects to every node it learns of at start, over TLS).
    let app = TestApp::conformance_on(
        Settings::new(Store::RedisCluster),
        AnyStorage::new(storage),
        |routes| routes,
    )
    .await;
    for n in 0..12 {
        let cookie = app.session_with(&format!(r#"{{"n": {n}}}"#)).await;
        assert_eq!(
            app.get("/session", Some(&cookie)).await.data(),
            json!({ "n": n })
        );
    }
}

/// PostgreSQL's own TLS parameters in `DATABASE_URL`: `sslmode=verify-full`
/// with `sslrootcert` naming the test's CA connects and serves sessions;
/// without the CA, the server's certificate is an error at connect.
#[tokio::test]
async fn postgres_verify_full_trusts_its_sslrootcert_and_refuses_without_it() {
    use session_tests::servers::{Postgres, TestCertificates};
    use typed_sessions::PostgresStorage;

    let certificates = TestCertificates::make();
    let postgres = Postgres::start_tls(&certificates);
    let verified = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        postgres.url(),
        certificates.ca.display()
    );
    let storage = PostgresStorage::connect(&verified)
        .await
        .expect("the server's certificate is verified against the CA");
    storage.migrate().await.expect("the table is made over TLS");
    let app = TestApp::conformance_on(
        Settings::new(Store::Postgres),
        AnyStorage::new(storage),
        |routes| routes,
    )
    .await;
    let cookie = app.session_with(r#"{"over": "tls"}"#).await;
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"over": "tls"})
    );

    // Without the CA, `verify-full` and even `require` (PostgreSQL's own
    // meaning: no check) refuse the certificate at connect.
    for mode in ["verify-full", "verify-ca", "require"] {
        let unverified = format!("{}?sslmode={mode}", postgres.url());
        let refused = PostgresStorage::connect(&unverified)
            .await
            .expect_err("a certificate nothing trusts is refused at connect");
        let message = session_examples::conformance::typed_sessions_error_chain(&refused);
        assert!(
            message.to_lowercase().contains("certificate"),
            "{mode} says why: {message}"
        );
    }
    let required = format!(
        "{}?sslmode=require&sslrootcert={}",
        postgres.url(),
        certificates.ca.display()
    );
    PostgresStorage::connect(&required)
        .await
        .expect("require with the CA connects");
}

/// MySQL's `ssl-mode` and `ssl-ca` against MariaDB speaking TLS with a CA
/// the test made, as a user whose password comes from its own setting.
#[tokio::test]
async fn mysql_verify_identity_trusts_its_ssl_ca_and_refuses_without_it() {
    use session_tests::servers::{MariaDb, TestCertificates};
    use typed_sessions::MySqlStorage;
    use typed_sessions::sqlx::mysql::MySqlConnectOptions;

    let certificates = TestCertificates::make();
    let mariadb = MariaDb::start_tls(&certificates);
    let password = "My-Tls-Pw-0420";
    mariadb.sql(&format!(
        "CREATE USER 'app'@'%' IDENTIFIED BY '{password}' REQUIRE SSL; \
         GRANT ALL ON sessions.* TO 'app'@'%'"
    ));
    let base = format!("mysql://app@127.0.0.1:{}/sessions", mariadb.port);
    let verified = format!(
        "{base}?ssl-mode=VERIFY_IDENTITY&ssl-ca={}",
        certificates.ca.display()
    );
    let options = verified
        .parse::<MySqlConnectOptions>()
        .unwrap()
        .password(password);
    let storage = MySqlStorage::connect_with(options)
        .await
        .expect("the server's certificate is verified against the CA");
    storage.migrate().await.expect("the table is made over TLS");
    let app = TestApp::conformance_on(
        Settings::new(Store::MySql),
        AnyStorage::new(storage),
        |routes| routes,
    )
    .await;
    let cookie = app.session_with(r#"{"over": "tls"}"#).await;
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"over": "tls"})
    );

    // Without the CA, `VERIFY_IDENTITY`, `VERIFY_CA` and even `REQUIRED`
    // (MySQL's own meaning: no check) refuse the certificate at connect,
    // and no message shows the password.
    for mode in ["VERIFY_IDENTITY", "VERIFY_CA", "REQUIRED"] {
        let unverified = format!(
            "mysql://app:{password}@127.0.0.1:{}/sessions?ssl-mode={mode}",
            mariadb.port
        );
        let refused = MySqlStorage::connect(&unverified)
            .await
            .expect_err("a certificate nothing trusts is refused at connect");
        let message = session_examples::conformance::typed_sessions_error_chain(&refused);
        assert!(
            message.to_lowercase().contains("certificate"),
            "{mode} says why: {message}"
        );
        assert!(!message.contains(password), "{message}");
        assert!(!format!("{refused:?}").contains(password));
    }
    let required = format!(
        "mysql://app:{password}@127.0.0.1:{}/sessions?ssl-mode=REQUIRED&ssl-ca={}",
        mariadb.port,
        certificates.ca.display()
    );
    MySqlStorage::connect(&required)
        .await
        .expect("REQUIRED with the CA connects");
    // A user that must use TLS cannot be reached without it.
    let plain = format!(
        "mysql://app:{password}@127.0.0.1:{}/sessions?ssl-mode=DISABLED",
        mariadb.port
    );
    let refused = MySqlStorage::connect(&plain)
        .await
        .expect_err("no TLS, no session store");
    assert!(!format!("{refused:?}").contains(password));
}

/// Sentinels, master and replica all speaking TLS with a CA the test made:
/// `rediss://` Sentinel URLs put the master behind TLS too, both verified
/// against the CA file; without it, nothing connects.
#[tokio::test]
async fn redis_through_sentinels_over_tls_verifies_sentinels_and_master() {
    use session_tests::servers::{RedisSentinels, SENTINEL_MASTER};

    let group = RedisSentinels::start_tls();
    let ca = &group.certificates.as_ref().unwrap().ca;
    let sentinels: Vec<String> = group.urls().split(',').map(str::to_owned).collect();
    let refused = RedisStorage::connect(RedisOptions::sentinel(sentinels.clone(), SENTINEL_MASTER))
        .await
        .expect_err("a certificate nothing trusts is refused at connect");
    let message = session_examples::conformance::typed_sessions_error_chain(&refused);
    assert!(
        message.to_lowercase().contains("certificate"),
        "says why: {message}"
    );
    let storage =
        RedisStorage::connect(RedisOptions::sentinel(sentinels, SENTINEL_MASTER).with_ca_file(ca))
            .await
            .expect("the Sentinels and the master are verified against the CA");
    sessions_work_over(storage).await;
}

/// The conformance app on `rediss://` with `SESSION_TLS_CA_FILE`, as the
/// third wave's contract gives it.
#[tokio::test]
async fn the_conformance_app_speaks_tls_to_redis_with_its_ca_file() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let redis = TlsRedis::start(false);
    let binary = session_tests::conformance_binary();
    let mut child = Command::new(&binary)
        .env("SESSION_STORE", "redis")
        .env("REDIS_URL", redis.url())
        .env("SESSION_TLS_CA_FILE", &redis.certificates.ca)
        .env("CONFORMANCE_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("start {}: {error}", binary.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let Some(base) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        panic!("the app did not start: {line}{stderr}");
    };
    let reply = reqwest::Client::new()
        .patch(format!("{base}/session"))
        .body(r#"{"a": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
}
