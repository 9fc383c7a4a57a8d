//! The shared HTTP suite: every case runs against every storage, through the
//! conformance app, over real HTTP on loopback.

use std::time::Duration;

use axum::routing::post;
use reqwest::Method;
use serde_json::json;
use session_examples::conformance::{Settings, Store};
use session_tests::{START, TestApp, for_every_storage, is_server_side, settings};
use typed_sessions::Session;

for_every_storage!(
    new_session_without_cookie,
    change_sets_one_cookie_and_the_next_request_reads_it,
    read_only_request_sets_no_cookie,
    untouched_request_gets_no_cookie_and_no_vary,
    removing_a_key_is_saved,
    emptying_the_session_removes_the_cookie,
    max_age_sends_max_age_and_expires,
    expired_cookie_replayed_is_an_empty_session,
    writes_slide_the_expiry,
    per_session_max_age_is_persisted,
    absolute_timeout_ends_an_active_session,
    invalidate_removes_the_cookie_and_the_data,
    login_starts_a_new_identity_without_the_old_data,
    renew_keeps_the_data_under_a_new_cookie,
    forged_cookie_is_not_adopted,
    bad_cookies_give_an_empty_session,
    redirect_carries_the_cookie,
    client_error_still_saves,
    server_error_does_not_save,
    cookie_attributes_follow_the_configuration,
    oversized_session,
    concurrent_sessions_lose_nothing,
    body_that_is_not_an_object_changes_nothing,
    increment_counts_per_session,
    created_survives_writes,
    any_text_is_kept_or_refused_with_a_reason,
);

async fn app(store: Store) -> TestApp {
    TestApp::conformance(settings(store)).await
}

async fn app_with(store: Store, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = settings(store);
    configure(&mut settings);
    TestApp::conformance(settings).await
}

async fn new_session_without_cookie(store: Store) {
    let app = app(store).await;
    let reply = app.get("/session", None).await;
    assert_eq!(reply.status, 200);
    let view = reply.json();
    assert_eq!(view["new"], true);
    assert_eq!(view["empty"], true);
    assert_eq!(view["identity"], json!(null));
    assert_eq!(view["created"], START);
    assert_eq!(view["max_age"], json!(null));
    assert_eq!(view["data"], json!({}));
    assert!(
        reply.set_cookies().is_empty(),
        "an empty new session sets no cookie"
    );
}

async fn change_sets_one_cookie_and_the_next_request_reads_it(store: Store) {
    let app = app(store).await;
    let reply = app.patch(None, r#"{"user": "ann", "n": 1}"#).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.data(), json!({"user": "ann", "n": 1}));
    assert_eq!(reply.set_cookies().len(), 1);
    let cookie = reply.new_cookie();

    let again = app.get("/session", Some(&cookie)).await;
    let view = again.json();
    assert_eq!(view["new"], false);
    assert_eq!(view["data"], json!({"user": "ann", "n": 1}));
    if is_server_side(store) {
        assert_eq!(
            view["identity"],
            json!(cookie),
            "the identity is the id in the cookie"
        );
    } else {
        assert_eq!(view["identity"], json!(null));
    }
}

async fn read_only_request_sets_no_cookie(store: Store) {
    let app = app(store).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    let reply = app.get("/session", Some(&cookie)).await;
    assert_eq!(reply.data(), json!({"a": 1}));
    assert!(reply.set_cookies().is_empty());
    assert!(reply.varies_on_cookie());
}

async fn untouched_request_gets_no_cookie_and_no_vary(store: Store) {
    let app = app(store).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    for cookie in [None, Some(cookie.as_str()), Some("garbage")] {
        let reply = app.get("/untouched", cookie).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "ok");
        assert!(reply.set_cookies().is_empty());
        assert!(!reply.varies_on_cookie());
    }
}

async fn removing_a_key_is_saved(store: Store) {
    let app = app(store).await;
    let cookie = app.session_with(r#"{"a": 1, "b": 2}"#).await;
    let reply = app.patch(Some(&cookie), r#"{"a": null}"#).await;
    assert_eq!(reply.data(), json!({"b": 2}));
    let cookie = reply.new_cookie();
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"b": 2})
    );
}

async fn emptying_the_session_removes_the_cookie(store: Store) {
    let app = app(store).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    let reply = app.patch(Some(&cookie), r#"{"a": null}"#).await;
    assert_eq!(reply.data(), json!({}));
    assert!(reply.cookie_attributes().contains(&"Max-Age=0".to_owned()));
    assert_eq!(reply.new_cookie(), "");
    if is_server_side(store) {
        assert_eq!(
            app.get("/session", Some(&cookie)).await.json()["new"],
            true,
            "the record is deleted"
        );
    }
}

async fn max_age_sends_max_age_and_expires(store: Store) {
    let app = app_with(store, |s| s.max_age = Some(60)).await;
    let reply = app.patch(None, r#"{"a": 1}"#).await;
    assert_eq!(reply.json()["max_age"], 60);
    let attributes = reply.cookie_attributes();
    assert!(
        attributes.contains(&"Max-Age=60".to_owned()),
        "{attributes:?}"
    );
    assert!(
        attributes.contains(&"Expires=Tue, 14 Nov 2023 22:14:20 GMT".to_owned()),
        "{attributes:?}"
    );

    app.clock.advance(30);
    let cookie = reply.new_cookie();
    let reply = app.patch(Some(&cookie), r#"{"a": 2}"#).await;
    let attributes = reply.cookie_attributes();
    assert!(
        attributes.contains(&"Expires=Tue, 14 Nov 2023 22:14:50 GMT".to_owned()),
        "Expires moves with each write: {attributes:?}"
    );
}

async fn expired_cookie_replayed_is_an_empty_session(store: Store) {
    let app = app_with(store, |s| s.max_age = Some(60)).await;
    let read = app.session_with(r#"{"a": 1}"#).await;
    let replayed = app.session_with(r#"{"a": 1}"#).await;
    // 60 seconds on a clock read in whole seconds may be 59.01 real ones:
    // the session is still there, and gone one second later. (Two sessions,
    // since a read past half the max age extends the one it reads.)
    app.clock.advance(60);
    assert_eq!(
        app.get("/session", Some(&read)).await.data(),
        json!({"a": 1})
    );
    app.clock.advance(1);
    let reply = app.get("/session", Some(&replayed)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()["new"],
        true,
        "the server refuses the replayed cookie"
    );
    assert_eq!(reply.data(), json!({}));
}

async fn writes_slide_the_expiry(store: Store) {
    let app = app_with(store, |s| s.max_age = Some(60)).await;
    let mut cookie = app.session_with(r#"{"n": 0}"#).await;
    for n in 1..=5 {
        app.clock.advance(40);
        let reply = app.patch(Some(&cookie), &format!(r#"{{"n": {n}}}"#)).await;
        assert_eq!(reply.json()["new"], false, "still alive after {} s", 40 * n);
        cookie = reply.new_cookie();
    }
    app.clock.advance(61);
    assert_eq!(app.get("/session", Some(&cookie)).await.json()["new"], true);
}

async fn per_session_max_age_is_persisted(store: Store) {
    let app = app_with(store, |s| s.max_age = Some(3600)).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    let reply = app
        .post("/session/max_age", Some(&cookie), r#"{"max_age": 10}"#)
        .await;
    assert_eq!(reply.json()["max_age"], 10);
    assert!(reply.cookie_attributes().contains(&"Max-Age=10".to_owned()));
    let cookie = reply.new_cookie();

    let reply = app.patch(Some(&cookie), r#"{"b": 2}"#).await;
    assert_eq!(
        reply.json()["max_age"],
        10,
        "the max age is kept by the next request"
    );
    assert!(reply.cookie_attributes().contains(&"Max-Age=10".to_owned()));
    let cookie = reply.new_cookie();
    app.clock.advance(5);
    assert_eq!(
        app.get("/session", Some(&cookie)).await.json()["new"],
        false
    );
    app.clock.advance(6);
    assert_eq!(app.get("/session", Some(&cookie)).await.json()["new"], true);

    let cookie = app.session_with(r#"{"a": 1}"#).await;
    let reply = app
        .post("/session/max_age", Some(&cookie), r#"{"max_age": null}"#)
        .await;
    assert_eq!(reply.json()["max_age"], json!(null));
    let attributes = reply.cookie_attributes();
    assert!(
        !attributes
            .iter()
            .any(|a| a.starts_with("Max-Age") || a.starts_with("Expires")),
        "{attributes:?}"
    );
}

async fn absolute_timeout_ends_an_active_session(store: Store) {
    let app = app_with(store, |s| {
        s.max_age = Some(60);
        s.absolute_timeout = Some(100);
    })
    .await;
    let mut cookie = app.session_with(r#"{"n": 0}"#).await;
    app.clock.advance(50);
    cookie = app.patch(Some(&cookie), r#"{"n": 1}"#).await.new_cookie();
    app.clock.advance(50);
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"n": 1})
    );
    app.clock.advance(1);
    assert_eq!(app.get("/session", Some(&cookie)).await.json()["new"], true);
}

async fn invalidate_removes_the_cookie_and_the_data(store: Store) {
    let app = app(store).await;
    let cookie = app.session_with(r#"{"user": "ann"}"#).await;
    let reply = app.post("/session/invalidate", Some(&cookie), "").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.data(), json!({}));
    assert_eq!(reply.new_cookie(), "");
    let attributes = reply.cookie_attributes();
    for expected in [
        "Max-Age=0",
        "Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        "Path=/",
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
    ] {
        assert!(
            attributes.contains(&expected.to_owned()),
            "{expected} missing: {attributes:?}"
        );
    }
    if is_server_side(store) {
        let replay = app.get("/session", Some(&cookie)).await;
        assert_eq!(replay.json()["new"], true, "the record is deleted");
        assert_eq!(replay.data(), json!({}));
    }
}

async fn login_starts_a_new_identity_without_the_old_data(store: Store) {
    let app = app(store).await;
    let old = app.session_with(r#"{"cart": [1, 2]}"#).await;
    let reply = app
        .post("/session/login", Some(&old), r#"{"user": "ann"}"#)
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.data(), json!({"user": "ann"}));
    assert_eq!(reply.json()["new"], true);
    let new = reply.new_cookie();
    assert_ne!(new, old, "fixation: the cookie changes on login");
    assert_eq!(
        app.get("/session", Some(&new)).await.data(),
        json!({"user": "ann"})
    );
    if is_server_side(store) {
        assert_eq!(
            app.get("/session", Some(&old)).await.json()["new"],
            true,
            "the old record is deleted"
        );
    }
}

async fn renew(session: Session) -> &'static str {
    session.renew();
    "renewed"
}

async fn renew_keeps_the_data_under_a_new_cookie(store: Store) {
    let app = TestApp::conformance_with(settings(store), |routes| {
        routes.route("/renew", post(renew))
    })
    .await;
    let old = app.session_with(r#"{"user": "ann"}"#).await;
    let reply = app.post("/renew", Some(&old), "").await;
    assert_eq!(reply.status, 200);
    let new = reply.new_cookie();
    if store != Store::Simple {
        // The plain cookie is its data: with nothing to seal anew and no id,
        // renewing re-sends the same value.
        assert_ne!(new, old);
    }
    let view = app.get("/session", Some(&new)).await.json();
    assert_eq!(view["data"], json!({"user": "ann"}));
    if is_server_side(store) {
        assert_ne!(view["identity"], json!(old));
        assert_eq!(
            app.get("/session", Some(&old)).await.json()["new"],
            true,
            "the old id is worthless"
        );
    }
}

/// Sets a key with a NUL, removes it again, and sets `b`: the removal of a
/// key the store never saw.
async fn set_and_remove_a_nul_key(session: Session) -> &'static str {
    session.insert("k\u{0}", 1).expect("a number is JSON");
    session.remove("k\u{0}");
    session.insert("b", 2).expect("a number is JSON");
    "done"
}

async fn any_text_is_kept_or_refused_with_a_reason(store: Store) {
    let app = TestApp::conformance_with(settings(store), |routes| {
        routes.route("/nul-key", post(set_and_remove_a_nul_key))
    })
    .await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    // What a form field may carry: a backslash and `u0000` as text (not a
    // NUL), line and paragraph separators, a character outside the BMP.
    let text = json!({"t": "\\u0000 \\\\u0000 \u{2028}\u{2029} \u{1F600}", "k\\u0000": 2});
    let reply = app.patch(Some(&cookie), &text.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let cookie = reply.new_cookie();
    let mut expected = text.as_object().unwrap().clone();
    expected.insert("a".into(), json!(1));
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!(expected)
    );

    let nul = json!({"n": "a\u{0}b"});
    let reply = app.patch(Some(&cookie), &nul.to_string()).await;
    if store == Store::Postgres {
        // jsonb has no NUL: a 500 that says the session cannot be saved
        // (not a 503 inviting a retry), and the stored session is intact.
        assert_eq!(reply.status, 500);
        assert_eq!(reply.json()["error"], "the session could not be saved");
        assert!(reply.set_cookies().is_empty());
        assert_eq!(
            app.get("/session", Some(&cookie)).await.data(),
            json!(expected)
        );
    } else {
        assert_eq!(reply.status, 200, "{}", reply.body);
        let cookie = reply.new_cookie();
        expected.insert("n".into(), json!("a\u{0}b"));
        assert_eq!(
            app.get("/session", Some(&cookie)).await.data(),
            json!(expected)
        );
    }

    let cookie = app.session_with(r#"{"a": 1}"#).await;
    let reply = app.post("/nul-key", Some(&cookie), "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        app.get("/session", Some(&reply.new_cookie())).await.data(),
        json!({"a": 1, "b": 2})
    );
}

async fn forged_cookie_is_not_adopted(store: Store) {
    let app = app(store).await;
    // The shape of a real id, but never issued by this server.
    let forged = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let reply = app.get("/session", Some(forged)).await;
    assert_eq!(reply.json()["new"], true);
    let reply = app.patch(Some(forged), r#"{"a": 1}"#).await;
    assert_eq!(reply.json()["new"], true);
    let cookie = reply.new_cookie();
    assert_ne!(cookie, forged, "a client never chooses its id");
    assert_eq!(app.get("/session", Some(forged)).await.json()["new"], true);
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"a": 1})
    );
}

async fn bad_cookies_give_an_empty_session(store: Store) {
    let app = app(store).await;
    let good = app.session_with(r#"{"a": 1}"#).await;
    let mut tampered = good.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let cases = [
        tampered,
        good[..good.len() / 2].to_owned(),
        format!("{good}x"),
        "garbage".to_owned(),
        "%FF%FE".to_owned(),
        "\"quoted\"".to_owned(),
        "x".repeat(5000),
        "A".repeat(43),
    ];
    for bad in &cases {
        let reply = app.get("/session", Some(bad)).await;
        assert_eq!(reply.status, 200, "cookie {bad:.40}…");
        assert_eq!(reply.json()["new"], true, "cookie {bad:.40}…");
        assert_eq!(reply.data(), json!({}));
        assert!(reply.set_cookies().is_empty());
        // A write on top of a bad cookie starts a fresh session.
        let reply = app.patch(Some(bad), r#"{"b": 2}"#).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.data(), json!({"b": 2}));
    }
}

async fn redirect_carries_the_cookie(store: Store) {
    let app = app(store).await;
    let reply = app
        .send(
            Method::PATCH,
            "/session?status=302",
            None,
            Some(r#"{"a": 1}"#),
        )
        .await;
    assert_eq!(reply.status, 302);
    assert_eq!(reply.headers["location"], "/session");
    let cookie = reply.new_cookie();
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"a": 1})
    );
}

async fn client_error_still_saves(store: Store) {
    let app = app(store).await;
    let reply = app
        .send(
            Method::PATCH,
            "/session?status=404",
            None,
            Some(r#"{"a": 1}"#),
        )
        .await;
    assert_eq!(reply.status, 404);
    let cookie = reply.new_cookie();
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"a": 1})
    );
}

async fn server_error_does_not_save(store: Store) {
    let app = app(store).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    let reply = app
        .send(
            Method::PATCH,
            "/session?status=500",
            Some(&cookie),
            Some(r#"{"a": 2}"#),
        )
        .await;
    assert_eq!(reply.status, 500);
    assert!(reply.set_cookies().is_empty());
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"a": 1})
    );
}

async fn cookie_attributes_follow_the_configuration(store: Store) {
    let app = app_with(store, |s| {
        s.cookie_name = Some("sid".into());
        s.cookie_path = Some("/app".into());
        s.cookie_domain = Some("example.test".into());
        s.secure = Some(false);
        s.http_only = Some(false);
        s.same_site = Some("Strict".parse().unwrap());
    })
    .await;
    let reply = app.patch(None, r#"{"a": 1}"#).await;
    let header = reply.session_set_cookie().expect("a sid cookie");
    assert!(header.starts_with("sid="), "{header}");
    let attributes = reply.cookie_attributes();
    for expected in ["Path=/app", "Domain=example.test", "SameSite=Strict"] {
        assert!(
            attributes.contains(&expected.to_owned()),
            "{expected} missing: {attributes:?}"
        );
    }
    assert!(!attributes.contains(&"Secure".to_owned()));
    assert!(!attributes.contains(&"HttpOnly".to_owned()));
    let cookie = reply.new_cookie();
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"a": 1})
    );
}

async fn oversized_session(store: Store) {
    let app = app(store).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    let big = "x".repeat(5000);
    let reply = app
        .patch(Some(&cookie), &json!({ "big": big }).to_string())
        .await;
    if is_server_side(store) {
        assert_eq!(reply.status, 200, "a server-side store holds it");
        let cookie = reply.new_cookie();
        assert_eq!(
            app.get("/session", Some(&cookie)).await.data()["big"],
            json!(big)
        );
    } else {
        assert_eq!(reply.status, 500);
        assert!(
            reply.set_cookies().is_empty(),
            "a cookie over 4096 bytes is never sent"
        );
        assert!(reply.json()["error"].is_string());
        assert_eq!(
            app.get("/session", Some(&cookie)).await.data(),
            json!({"a": 1}),
            "the previous cookie stays valid"
        );
    }
}

async fn concurrent_sessions_lose_nothing(store: Store) {
    let app = std::sync::Arc::new(app(store).await);
    let clients = (0..16).map(|_| {
        let app = app.clone();
        tokio::spawn(async move {
            let mut cookie = app.session_with(r#"{"n": 0}"#).await;
            for _ in 0..10 {
                let reply = app.post("/session/incr?key=n", Some(&cookie), "").await;
                assert_eq!(reply.status, 200);
                cookie = reply.new_cookie();
            }
            app.get("/session", Some(&cookie)).await.data()
        })
    });
    for client in clients.collect::<Vec<_>>() {
        assert_eq!(client.await.unwrap(), json!({"n": 10}));
    }
}

async fn body_that_is_not_an_object_changes_nothing(store: Store) {
    let app = app(store).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    for body in ["[1, 2]", "\"text\"", "not json", ""] {
        let reply = app.patch(Some(&cookie), body).await;
        assert_eq!(reply.status, 400, "{body:?}");
        assert!(reply.json()["error"].is_string());
        assert!(reply.set_cookies().is_empty());
        let reply = app.post("/session/login", Some(&cookie), body).await;
        assert_eq!(reply.status, 400, "{body:?}");
        assert!(reply.set_cookies().is_empty());
    }
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"a": 1})
    );
}

async fn increment_counts_per_session(store: Store) {
    let app = app(store).await;
    let first = app.post("/session/incr?key=count", None, "").await;
    assert_eq!(first.json(), json!({"value": 1}));
    let cookie = first.new_cookie();
    let second = app.post("/session/incr?key=count", Some(&cookie), "").await;
    assert_eq!(second.json(), json!({"value": 2}));
    let other = app.post("/session/incr?key=count", None, "").await;
    assert_eq!(
        other.json(),
        json!({"value": 1}),
        "another client has its own count"
    );
}

async fn created_survives_writes(store: Store) {
    let app = app_with(store, |s| s.max_age = Some(600)).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    app.clock.advance(100);
    let reply = app.patch(Some(&cookie), r#"{"a": 2}"#).await;
    assert_eq!(reply.json()["created"], START);
    let cookie = reply.new_cookie();
    assert_eq!(
        app.get("/session", Some(&cookie)).await.json()["created"],
        START
    );
}

#[tokio::test]
async fn sub_second_max_age_is_refused_at_start_up() {
    let refused = typed_sessions::SessionLayer::builder(typed_sessions::MemoryStorage::new())
        .with_max_age(Some(Duration::from_millis(500)))
        .build();
    assert!(refused.is_err());
}
