//! What only the encrypted cookie storage does: key rotation, binding to
//! the cookie name, the envelope's versions, and the cache of opened
//! cookies.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use session_examples::conformance::{Settings, Store};
use session_tests::{START, TestApp};
use typed_sessions::{AnyStorage, EncryptedCookieStorage, SessionKey};

fn keyed(key: &SessionKey, old: Vec<SessionKey>) -> Settings {
    let mut settings = Settings::new(Store::Encrypted);
    settings.secret = Some(key.clone());
    settings.old_secrets = old;
    settings
}

#[tokio::test]
async fn rotated_keys_still_open_old_cookies_and_reseal_with_the_new_key() {
    let old_key = SessionKey::generate();
    let new_key = SessionKey::generate();

    let before = TestApp::conformance(keyed(&old_key, vec![])).await;
    let old_cookie = before.session_with(r#"{"user": "ann"}"#).await;

    let rotated = TestApp::conformance(keyed(&new_key, vec![old_key.clone()])).await;
    let reply = rotated.get("/session", Some(&old_cookie)).await;
    assert_eq!(
        reply.data(),
        json!({"user": "ann"}),
        "an old key still reads"
    );
    let resealed = rotated
        .patch(Some(&old_cookie), r#"{"n": 1}"#)
        .await
        .new_cookie();

    let new_only = TestApp::conformance(keyed(&new_key, vec![])).await;
    assert_eq!(
        new_only.get("/session", Some(&resealed)).await.data(),
        json!({"user": "ann", "n": 1}),
        "the next write seals with the current key"
    );
    assert_eq!(
        new_only.get("/session", Some(&old_cookie)).await.json()["new"],
        true
    );

    let old_only = TestApp::conformance(keyed(&old_key, vec![])).await;
    assert_eq!(
        old_only.get("/session", Some(&resealed)).await.json()["new"],
        true,
        "old keys never seal"
    );
}

#[tokio::test]
async fn a_cookie_from_another_key_is_a_new_session() {
    let ours = TestApp::conformance(keyed(&SessionKey::generate(), vec![])).await;
    let theirs = TestApp::conformance(keyed(&SessionKey::generate(), vec![])).await;
    let foreign = theirs.session_with(r#"{"admin": true}"#).await;
    let reply = ours.get("/session", Some(&foreign)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["new"], true);
    assert_eq!(reply.data(), json!({}));
}

#[tokio::test]
async fn a_value_moved_to_another_cookie_name_does_not_open() {
    let key = SessionKey::generate();
    let mut settings = keyed(&key, vec![]);
    settings.cookie_name = Some("a".into());
    let first = TestApp::conformance(settings).await;
    let value = first.session_with(r#"{"user": "ann"}"#).await;

    let mut settings = keyed(&key, vec![]);
    settings.cookie_name = Some("b".into());
    let second = TestApp::conformance(settings).await;
    assert_eq!(
        second.get("/session", Some(&value)).await.json()["new"],
        true
    );
    assert_eq!(
        first.get("/session", Some(&value)).await.data(),
        json!({"user": "ann"})
    );
}

#[tokio::test]
async fn the_cookie_does_not_show_the_data() {
    let app = TestApp::conformance(keyed(&SessionKey::generate(), vec![])).await;
    let cookie = app.session_with(r#"{"secret": "hunter2"}"#).await;
    assert!(!cookie.contains("hunter2"));
    assert!(
        cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
}

/// The envelope version a cookie value was sealed in.
fn envelope_version(cookie: &str) -> u8 {
    URL_SAFE_NO_PAD.decode(cookie).expect("base64url")[0]
}

/// An app on `storage`, whose cookie is named `session`.
async fn app_on(storage: EncryptedCookieStorage) -> TestApp {
    let mut settings = Settings::new(Store::Encrypted);
    settings.cookie_name = Some("session".into());
    TestApp::conformance_on(settings, AnyStorage::new(storage), |routes| routes).await
}

#[tokio::test]
async fn a_cookie_of_envelope_version_1_still_opens_and_is_sealed_again_in_version_2() {
    // `{"created": START, "updated": START, "max_age": 3600, "session":
    // {"n": 1, "user": "ann"}}` sealed for the cookie `session` by the
    // version 1 code as released (commit 32d2b0e), with this key.
    let key = SessionKey::from_bytes(b"typed-sessions fixed test key 01").unwrap();
    let v1 = "AaZU34QM82QZ0yVFJya0ouwB6f-TLbv6GZYYLadTRTfYC1wlnemuxMeuIg_-Qp-Y3PNCqb1__f9VnPg6KiLLQ1BmcME_d29Q2S8ZhoIxzRTJLzmtkgaX3130hRdyv8J5ChaFFIzakYa0RnoepOwOK2RzsAmesfzf5es";
    assert_eq!(START, 1_700_000_000, "the vector was sealed at START");
    assert_eq!(envelope_version(v1), 1);

    for app in [
        app_on(EncryptedCookieStorage::new(key.clone())).await,
        app_on(EncryptedCookieStorage::new(SessionKey::generate()).with_old_keys([key.clone()]))
            .await,
    ] {
        let reply = app.get("/session", Some(v1)).await;
        assert_eq!(reply.json()["new"], false, "{}", reply.body);
        assert_eq!(reply.data(), json!({"n": 1, "user": "ann"}));

        let resealed = app.patch(Some(v1), r#"{"n": 2}"#).await.new_cookie();
        assert_eq!(
            envelope_version(&resealed),
            2,
            "every write seals in version 2"
        );
        assert_eq!(
            app.get("/session", Some(&resealed)).await.data(),
            json!({"n": 2, "user": "ann"})
        );
    }
}

#[tokio::test]
async fn new_cookies_are_sealed_in_envelope_version_2() {
    let app = TestApp::conformance(keyed(&SessionKey::generate(), vec![])).await;
    let cookie = app.session_with(r#"{"user": "ann"}"#).await;
    assert_eq!(envelope_version(&cookie), 2);
}
