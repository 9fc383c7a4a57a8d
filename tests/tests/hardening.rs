//! Edges an attacker or an unlucky user reaches: held against every storage,
//! through the conformance app, over real HTTP.

use axum::http::header::CACHE_CONTROL;
use axum::routing::post;
use serde_json::json;
use session_examples::conformance::Store;
use session_tests::{START, TestApp, for_every_storage, is_server_side, settings};
use typed_sessions::{
    Session,
    storage::{MAX_RECORD_BYTES, MaxAge},
};

for_every_storage!(
    a_foreign_byte_in_another_cookie_keeps_the_session,
    a_malformed_pair_beside_the_session_cookie_is_skipped,
    a_quoted_value_and_spaces_around_pairs_are_read,
    with_several_session_cookies_the_first_one_counts,
    responses_that_set_the_cookie_are_private,
    a_renewal_does_not_bring_back_a_session_ended_meanwhile,
    a_session_written_by_a_fast_clock_is_refused,
    wide_sessions_are_kept_by_every_server_store,
    every_server_store_keeps_sessions_up_to_the_size_limit_and_refuses_larger,
    what_is_saved_reads_back_and_deeper_values_are_refused,
    the_default_cookie_is_a_host_cookie,
);

async fn app(store: Store) -> TestApp {
    TestApp::conformance(settings(store)).await
}

/// `Cookie: <before><name>=<cookie><after>`, answered by `GET /session`:
/// the session's data.
async fn data_with_header(app: &TestApp, header: Vec<u8>) -> serde_json::Value {
    let reply = app.get_with_cookie_header("/session", &header).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.data()
}

fn header(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

async fn a_foreign_byte_in_another_cookie_keeps_the_session(store: Store) {
    let app = app(store).await;
    let cookie = app.session_with(r#"{"user": "ann"}"#).await;
    let name = app.cookie_name().as_bytes();
    // Raw UTF-8, as a sibling app on the domain may set it, and a Latin-1
    // byte that is not UTF-8 at all, before and after the session cookie.
    for foreign in [&b"pref=caf\xc3\xa9"[..], &b"pref=caf\xe9"[..]] {
        let before = header(&[foreign, b"; ", name, b"=", cookie.as_bytes()]);
        assert_eq!(data_with_header(&app, before).await, json!({"user": "ann"}));
        let after = header(&[name, b"=", cookie.as_bytes(), b"; ", foreign]);
        assert_eq!(data_with_header(&app, after).await, json!({"user": "ann"}));
    }
}

async fn a_malformed_pair_beside_the_session_cookie_is_skipped(store: Store) {
    let app = app(store).await;
    let cookie = app.session_with(r#"{"user": "ann"}"#).await;
    let name = app.cookie_name().as_bytes();
    for junk in [&b"no-equals-sign"[..], b"=no-name", b";", b"a=\"unclosed"] {
        let line = header(&[junk, b"; ", name, b"=", cookie.as_bytes(), b"; ", junk]);
        assert_eq!(
            data_with_header(&app, line).await,
            json!({"user": "ann"}),
            "beside {:?}",
            String::from_utf8_lossy(junk)
        );
    }
}

async fn a_quoted_value_and_spaces_around_pairs_are_read(store: Store) {
    let app = app(store).await;
    let cookie = app.session_with(r#"{"user": "ann"}"#).await;
    let name = app.cookie_name().as_bytes();
    let quoted = header(&[name, b"=\"", cookie.as_bytes(), b"\""]);
    assert_eq!(data_with_header(&app, quoted).await, json!({"user": "ann"}));
    let spaced = header(&[b"  a=1 ;  ", name, b" = ", cookie.as_bytes(), b"  ;b=2  "]);
    assert_eq!(data_with_header(&app, spaced).await, json!({"user": "ann"}));
}

async fn with_several_session_cookies_the_first_one_counts(store: Store) {
    let app = app(store).await;
    let ann = app.session_with(r#"{"user": "ann"}"#).await;
    let bob = app.session_with(r#"{"user": "bob"}"#).await;
    let name = app.cookie_name().as_bytes();
    // Browsers send the cookie with the longest path first, then the oldest:
    // the first is the one set for this part of the site.
    let both = header(&[
        name,
        b"=",
        ann.as_bytes(),
        b"; ",
        name,
        b"=",
        bob.as_bytes(),
    ]);
    assert_eq!(data_with_header(&app, both).await, json!({"user": "ann"}));
    let reversed = header(&[
        name,
        b"=",
        bob.as_bytes(),
        b"; ",
        name,
        b"=",
        ann.as_bytes(),
    ]);
    assert_eq!(
        data_with_header(&app, reversed).await,
        json!({"user": "bob"})
    );
    // An empty first value does not hide the one after it.
    let empty_first = header(&[name, b"=; ", name, b"=", ann.as_bytes()]);
    assert_eq!(
        data_with_header(&app, empty_first).await,
        json!({"user": "ann"})
    );
}

/// A handler that writes the session and sets its own `Cache-Control`.
async fn write_with_cache_control(
    session: Session,
    axum::extract::Path(directives): axum::extract::Path<String>,
) -> impl axum::response::IntoResponse {
    session.insert("n", 1).expect("a number serializes");
    ([(CACHE_CONTROL, directives)], "ok")
}

async fn responses_that_set_the_cookie_are_private(store: Store) {
    let app = TestApp::conformance_with(settings(store), |routes| {
        routes.route("/cache/{directives}", post(write_with_cache_control))
    })
    .await;
    let cache_control = |reply: &session_tests::Reply| {
        reply
            .headers
            .get(CACHE_CONTROL)
            .map(|value| value.to_str().expect("ASCII").to_owned())
    };
    let written = app.patch(None, r#"{"a": 1}"#).await;
    assert!(written.session_set_cookie().is_some());
    assert_eq!(cache_control(&written).as_deref(), Some("private"));
    let cookie = written.new_cookie();
    let read = app.get("/session", Some(&cookie)).await;
    assert!(read.session_set_cookie().is_none());
    assert_eq!(
        cache_control(&read),
        None,
        "a read sets no cookie: no change"
    );
    let removed = app.patch(Some(&cookie), r#"{"a": null}"#).await;
    assert!(removed.session_set_cookie().is_some(), "the removal cookie");
    assert_eq!(cache_control(&removed).as_deref(), Some("private"));

    for (set, expected) in [
        ("public, max-age=60", "private, max-age=60"),
        ("max-age=60, s-maxage=600", "private, max-age=60"),
        ("no-store", "no-store"),
        (
            "private=\"x-user\", max-age=5",
            "private, private=\"x-user\", max-age=5",
        ),
        ("private, max-age=5", "private, max-age=5"),
    ] {
        let reply = app
            .post(&format!("/cache/{}", set.replace(' ', "%20")), None, "")
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(reply.session_set_cookie().is_some());
        assert_eq!(
            cache_control(&reply).as_deref(),
            Some(expected),
            "from {set:?}"
        );
    }
}

/// Two gates a handler waits at: `entered` opens when it has its session,
/// `proceed` when the test lets it finish.
#[derive(Clone, Default)]
struct Gates {
    entered: std::sync::Arc<tokio::sync::Notify>,
    proceed: std::sync::Arc<tokio::sync::Notify>,
}

async fn a_renewal_does_not_bring_back_a_session_ended_meanwhile(store: Store) {
    if !is_server_side(store) {
        return; // A cookie storage keeps nothing to end.
    }
    let gates = Gates::default();
    let handler_gates = gates.clone();
    let routes = move |routes: axum::Router| {
        routes.route(
            "/slow-renew",
            post(move |session: Session| async move {
                session.renew();
                handler_gates.entered.notify_one();
                handler_gates.proceed.notified().await;
                "renewed"
            }),
        )
    };
    // On the memory store the test keeps a handle to count what is left.
    let memory = typed_sessions::MemoryStorage::new();
    let app = match store {
        Store::Memory => {
            let storage = typed_sessions::storage::AnyStorage::new(memory.clone());
            TestApp::conformance_on(settings(store), storage, routes).await
        }
        _ => TestApp::conformance_with(settings(store), routes).await,
    };
    let app = std::sync::Arc::new(app);
    let cookie = app
        .session_with(r#"{"user": "ann", "role": "admin"}"#)
        .await;

    let renewing = tokio::spawn({
        let (app, cookie) = (app.clone(), cookie.clone());
        async move { app.post("/slow-renew", Some(&cookie), "").await }
    });
    gates.entered.notified().await;
    // An admin revokes the session (here: its own logout) mid-renewal.
    let logout = app.post("/session/invalidate", Some(&cookie), "").await;
    assert_eq!(logout.status, 200, "{}", logout.body);
    gates.proceed.notify_one();
    let renewed = renewing.await.expect("the renewing request ends");

    assert_eq!(renewed.status, 200, "{}", renewed.body);
    assert_eq!(
        renewed.session_set_cookie(),
        None,
        "no cookie for a session that was ended"
    );
    let after = app.get("/session", Some(&cookie)).await;
    assert_eq!(after.json()["new"], true);
    assert_eq!(after.data(), json!({}));
    if store == Store::Memory {
        assert_eq!(
            memory.len(),
            0,
            "the record made for the renewal is taken back"
        );
    }
}

async fn a_session_written_by_a_fast_clock_is_refused(store: Store) {
    let app = app(store).await;
    // A server whose clock runs an hour fast writes the session...
    app.clock.set(START + 3600);
    let ahead = app.session_with(r#"{"user": "ann"}"#).await;
    // ...and one with the right time reads it.
    app.clock.set(START);
    let read = app.get("/session", Some(&ahead)).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(
        read.json()["new"],
        true,
        "a record from the future is refused"
    );
    assert_eq!(read.data(), json!({}));
    // A minute and a second ahead is too far already...
    app.clock.set(START + 61);
    let just_over = app.session_with(r#"{"user": "cy"}"#).await;
    app.clock.set(START);
    assert_eq!(
        app.get("/session", Some(&just_over)).await.json()["new"],
        true
    );
    // ...and within a minute of skew, it is read as usual.
    app.clock
        .set(START + typed_sessions::storage::MAX_CLOCK_SKEW);
    let close = app.session_with(r#"{"user": "bob"}"#).await;
    app.clock.set(START);
    assert_eq!(
        app.get("/session", Some(&close)).await.data(),
        json!({"user": "bob"})
    );
}

async fn wide_sessions_are_kept_by_every_server_store(store: Store) {
    if !is_server_side(store) {
        return; // A cookie holds 4096 bytes: its limit is tested elsewhere.
    }
    let app = app(store).await;
    let wide: serde_json::Map<String, serde_json::Value> =
        (0..5_000).map(|i| (format!("key-{i}"), json!(i))).collect();
    let body = serde_json::Value::Object(wide.clone()).to_string();
    let written = app.patch(None, &body).await;
    assert_eq!(written.status, 200, "{}", written.body);
    let cookie = written.new_cookie();
    assert_eq!(app.get("/session", Some(&cookie)).await.data(), json!(wide));
    // A change to all of them, and their removal, in one request each.
    let changed: serde_json::Map<String, serde_json::Value> =
        wide.keys().map(|key| (key.clone(), json!("x"))).collect();
    let reply = app
        .patch(
            Some(&cookie),
            &serde_json::Value::Object(changed.clone()).to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!(changed)
    );
    let mut removed: serde_json::Map<String, serde_json::Value> =
        wide.keys().map(|key| (key.clone(), json!(null))).collect();
    removed.insert("kept".into(), json!(1));
    let reply = app
        .patch(
            Some(&cookie),
            &serde_json::Value::Object(removed).to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"kept": 1})
    );
    // A login (a new identity) with as many keys.
    let login = app.post("/session/login", Some(&cookie), &body).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let cookie = login.new_cookie();
    assert_eq!(app.get("/session", Some(&cookie)).await.data(), json!(wide));
}

async fn every_server_store_keeps_sessions_up_to_the_size_limit_and_refuses_larger(store: Store) {
    if !is_server_side(store) {
        return; // A cookie holds 4096 bytes: its limit is tested elsewhere.
    }
    let app = app(store).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    // The record's JSON with an empty `big`; the clock stays at START, so
    // both times are START.
    let envelope =
        format!(r#"{{"created":{START},"updated":{START},"session":{{"a":1,"big":""}}}}"#).len();
    let at_limit = "x".repeat(MAX_RECORD_BYTES - envelope);
    let reply = app
        .patch(Some(&cookie), &json!({ "big": at_limit }).to_string())
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        &reply.body[..reply.body.len().min(200)]
    );
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data()["big"]
            .as_str()
            .map(str::len),
        Some(at_limit.len()),
        "a session of exactly the limit reads back"
    );
    let over = "y".repeat(MAX_RECORD_BYTES - envelope + 1);
    let reply = app
        .patch(Some(&cookie), &json!({ "big": over }).to_string())
        .await;
    assert_eq!(reply.status, 500, "refused, not an outage");
    assert!(reply.set_cookies().is_empty());
    // The client is told the session could not be saved; the log says
    // why (the size and the limit, see `SaveError::SessionTooLarge`).
    assert!(reply.json()["error"].is_string(), "{}", reply.body);
    assert!(
        app.get("/session", Some(&cookie)).await.data()["big"]
            .as_str()
            .is_some_and(|big| big.starts_with('x')),
        "nothing of the refused save was written"
    );
    // A new session over the limit is refused the same way.
    let reply = app
        .patch(None, &json!({ "big": over, "a": 1 }).to_string())
        .await;
    assert_eq!(reply.status, 500);
    assert!(reply.set_cookies().is_empty());
}

/// `{"deep": [[[…1…]]]}` with `levels` levels of arrays.
fn nested(levels: usize) -> String {
    format!(
        "{{\"deep\": {}1{}}}",
        "[".repeat(levels),
        "]".repeat(levels)
    )
}

async fn what_is_saved_reads_back_and_deeper_values_are_refused(store: Store) {
    let app = app(store).await;
    let cookie = app.session_with(r#"{"user": "ann"}"#).await;
    let limit = typed_sessions::storage::MAX_VALUE_DEPTH;
    // As deep as allowed: saved, and read back by the next request.
    let reply = app.patch(Some(&cookie), &nested(limit)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let cookie = reply
        .session_set_cookie()
        .map_or(cookie, |_| reply.new_cookie());
    let read = app.get("/session", Some(&cookie)).await;
    assert_eq!(read.json()["new"], false, "the session reads back");
    assert_eq!(read.data()["user"], "ann");
    // Deeper ones, up to what the request body's own parser takes, are
    // refused when saving: nothing is written, the old session stays.
    for levels in [limit + 1, 126] {
        let reply = app.patch(Some(&cookie), &nested(levels)).await;
        assert_eq!(reply.status, 500, "{levels} levels: {}", reply.body);
        assert_eq!(reply.session_set_cookie(), None);
        let read = app.get("/session", Some(&cookie)).await;
        assert_eq!(read.json()["new"], false, "{levels} levels");
        assert_eq!(read.data()["user"], "ann", "{levels} levels");
    }
}

async fn the_default_cookie_is_a_host_cookie(store: Store) {
    let app = app(store).await;
    assert_eq!(app.cookie_name(), "__Host-session");
    let reply = app.patch(None, r#"{"a": 1}"#).await;
    let header = reply.session_set_cookie().expect("a session cookie");
    assert!(header.starts_with("__Host-session="), "{header}");
    let attributes = reply.cookie_attributes();
    for required in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(
            attributes.iter().any(|a| a == required),
            "{required} in {attributes:?}"
        );
    }
    assert!(
        !attributes.iter().any(|a| a.starts_with("Domain")),
        "{attributes:?}"
    );
}

/// A value deeper than the limit, stored before the limit existed, must not
/// lock its session out of renew() (a login) or of writes to other keys.
#[tokio::test]
async fn a_deep_value_stored_before_the_limit_does_not_block_its_session() {
    use typed_sessions::{
        MemoryStorage,
        storage::{AnyStorage, ServerStorage, SessionRecord, StorageContext},
    };
    let store = MemoryStorage::new();
    let levels = typed_sessions::storage::MAX_VALUE_DEPTH + 10;
    let mut record = SessionRecord::new(START, MaxAge::Layer);
    let deep: serde_json::Value = serde_json::from_str(&nested(levels)).unwrap();
    record.data.insert("deep".into(), deep["deep"].clone());
    record.data.insert("user".into(), json!("ann"));
    let id = store
        .create(&record, &StorageContext::new("__Host-session", START))
        .await
        .unwrap();
    let app = TestApp::conformance_on(
        settings(Store::Memory),
        AnyStorage::new(store.clone()),
        |routes| {
            routes.route(
                "/renew",
                post(|session: Session| async move {
                    session.renew();
                    "renewed"
                }),
            )
        },
    )
    .await;
    let reply = app.patch(Some(id.as_str()), r#"{"n": 1}"#).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let renewed = app.post("/renew", Some(id.as_str()), "").await;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    let cookie = renewed.new_cookie();
    let read = app.get("/session", Some(&cookie)).await;
    assert_eq!(read.data()["user"], "ann", "renewed with its data");
}
