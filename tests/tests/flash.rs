//! Flash messages on every storage, through the conformance app's `/flash`
//! routes: read once, in order, and no write for a read of none.

use serde_json::json;
use session_examples::conformance::Store;
use session_tests::{TestApp, for_every_storage, is_server_side, settings};

for_every_storage!(
    a_message_is_read_once_after_a_redirect,
    messages_keep_their_order_and_other_keys_stay,
    reading_no_messages_writes_nothing,
    a_message_that_is_not_a_string_is_refused,
);

async fn app(store: Store) -> TestApp {
    TestApp::conformance(settings(store)).await
}

async fn a_message_is_read_once_after_a_redirect(store: Store) {
    let app = app(store).await;
    let reply = app.post("/flash", None, r#"{"message": "saved"}"#).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let cookie = reply.new_cookie();
    let reply = app.get("/flash", Some(&cookie)).await;
    assert_eq!(reply.json(), json!({"messages": ["saved"]}));
    // Consuming the only key empties the session: its cookie goes.
    assert_eq!(
        reply.new_cookie(),
        "",
        "the emptied session's cookie is removed"
    );
    // The browser sends no cookie after that.
    let reply = app.get("/flash", None).await;
    assert_eq!(reply.json(), json!({"messages": []}), "read once");
    if is_server_side(store) {
        // The record is gone too: a replayed id shows nothing. (A replayed
        // cookie of a cookie storage still holds what it held: see the
        // README on revocation.)
        let reply = app.get("/flash", Some(&cookie)).await;
        assert_eq!(reply.json(), json!({"messages": []}));
    }
}

async fn messages_keep_their_order_and_other_keys_stay(store: Store) {
    let app = app(store).await;
    let mut cookie = app.session_with(r#"{"user": "ann"}"#).await;
    for message in ["one", "two", "three"] {
        let reply = app
            .post(
                "/flash",
                Some(&cookie),
                &json!({ "message": message }).to_string(),
            )
            .await;
        assert_eq!(reply.status, 200);
        cookie = reply.new_cookie();
    }
    let reply = app.get("/flash", Some(&cookie)).await;
    assert_eq!(reply.json(), json!({"messages": ["one", "two", "three"]}));
    let cookie = reply.new_cookie();
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"user": "ann"}),
        "only the messages were taken"
    );
}

async fn reading_no_messages_writes_nothing(store: Store) {
    let app = app(store).await;
    let cookie = app.session_with(r#"{"user": "ann"}"#).await;
    let reply = app.get("/flash", Some(&cookie)).await;
    assert_eq!(reply.json(), json!({"messages": []}));
    assert_eq!(
        reply.session_set_cookie(),
        None,
        "nothing changed, nothing sent"
    );
}

async fn a_message_that_is_not_a_string_is_refused(store: Store) {
    let app = app(store).await;
    let cookie = app.session_with(r#"{"user": "ann"}"#).await;
    let reply = app.post("/flash", Some(&cookie), r#"{"message": 5}"#).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.session_set_cookie(), None);
    let reply = app.get("/flash", Some(&cookie)).await;
    assert_eq!(reply.json(), json!({"messages": []}));
}
