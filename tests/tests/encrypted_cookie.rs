//! What only the encrypted cookie storage does: key rotation and binding to
//! the cookie name.

use serde_json::json;
use session_examples::conformance::{Settings, Store};
use session_tests::TestApp;
use typed_sessions::SessionKey;

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
