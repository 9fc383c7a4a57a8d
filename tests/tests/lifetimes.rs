//! How long sessions live, on every storage: the default limits, the read
//! that keeps an active user signed in, and deploys that change the
//! configured lifetimes binding the sessions issued before them.

use axum::extract::Query;
use axum::routing::post;
use serde_json::json;
use session_examples::conformance::{Settings, Store};
use session_tests::{Reply, TestApp, for_every_storage, settings};
use typed_sessions::{Refresh, Session};

for_every_storage!(
    by_default_an_idle_session_ends_after_30_minutes,
    by_default_an_active_session_ends_after_12_hours,
    a_read_past_half_the_idle_time_keeps_the_session,
    a_read_in_the_first_half_writes_nothing,
    refreshed_on_every_request_a_session_ends_a_max_age_after_the_last_read,
    refreshed_on_change_only_a_session_ends_a_max_age_after_the_last_write,
    a_max_age_added_by_a_deploy_binds_earlier_sessions,
    a_max_age_lowered_by_a_deploy_binds_earlier_sessions,
    a_max_age_the_session_chose_outlives_a_deploy,
    a_long_own_max_age_outlasts_the_absolute_timeout,
    a_browser_session_the_handler_chose_keeps_the_idle_timeout,
    remember_me_on_a_browser_session_layer_lasts_two_weeks,
    not_remembered_is_a_browser_session_cookie_with_the_idle_timeout,
    a_session_ends_at_the_time_it_chose,
);

async fn app_with(store: Store, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = settings(store);
    configure(&mut settings);
    TestApp::conformance(settings).await
}

/// The app after a deploy: the same storage (and key) as `before`, a new
/// configuration, a clock of its own at the same start.
async fn redeployed(
    before: &TestApp,
    store: Store,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = settings(store);
    configure(&mut settings);
    TestApp::conformance_on(settings, before.storage.clone(), |routes| routes).await
}

async fn is_new(app: &TestApp, cookie: &str) -> bool {
    app.get("/session", Some(cookie)).await.json()["new"] == true
}

/// The cookie to send next: the one `reply` set, or `cookie` if it set none.
fn next_cookie(reply: &Reply, cookie: String) -> String {
    match reply.session_set_cookie() {
        Some(_) => reply.new_cookie(),
        None => cookie,
    }
}

async fn by_default_an_idle_session_ends_after_30_minutes(store: Store) {
    let app = app_with(store, |_| {}).await;
    let kept = app.session_with(r#"{"a": 1}"#).await;
    let ended = app.session_with(r#"{"a": 1}"#).await;
    let reply = app.get("/session", Some(&kept)).await;
    assert_eq!(
        reply.json()["max_age"],
        json!(null),
        "a browser-session cookie"
    );
    app.clock.advance(30 * 60);
    assert!(!is_new(&app, &kept).await, "alive after 30 idle minutes");
    app.clock.advance(1);
    assert!(
        is_new(&app, &ended).await,
        "ended after 30 minutes and a second"
    );
}

async fn by_default_an_active_session_ends_after_12_hours(store: Store) {
    let app = app_with(store, |_| {}).await;
    let mut cookie = app.session_with(r#"{"a": 1}"#).await;
    // A request every 20 minutes, reads only, for 12 hours.
    for _ in 0..36 {
        app.clock.advance(20 * 60);
        let reply = app.get("/session", Some(&cookie)).await;
        assert_eq!(
            reply.json()["new"],
            false,
            "an active reader stays signed in"
        );
        cookie = next_cookie(&reply, cookie);
    }
    app.clock.advance(1);
    assert!(is_new(&app, &cookie).await, "ended 12 hours after it began");
}

async fn a_read_past_half_the_idle_time_keeps_the_session(store: Store) {
    let app = app_with(store, |s| s.max_age = Some(60)).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    app.clock.advance(31);
    let reply = app.get("/session", Some(&cookie)).await;
    assert!(
        reply.cookie_attributes().contains(&"Max-Age=60".to_owned()),
        "the cookie goes out again with a new expiry"
    );
    let cookie = reply.new_cookie();
    app.clock.advance(60);
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"a": 1}),
        "91 s after the write, 60 after the read"
    );
    app.clock.advance(61);
    assert!(is_new(&app, &cookie).await);
}

async fn a_read_in_the_first_half_writes_nothing(store: Store) {
    let app = app_with(store, |s| s.max_age = Some(60)).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    app.clock.advance(30);
    let reply = app.get("/session", Some(&cookie)).await;
    assert_eq!(reply.session_set_cookie(), None);
    app.clock.advance(31);
    assert!(is_new(&app, &cookie).await, "that read did not extend it");
}

async fn refreshed_on_every_request_a_session_ends_a_max_age_after_the_last_read(store: Store) {
    let app = app_with(store, |s| {
        s.max_age = Some(60);
        s.refresh = Some(Refresh::EveryRequest);
    })
    .await;
    let mut cookie = app.session_with(r#"{"a": 1}"#).await;
    // A read every 20 s, each in the first half of the max age.
    for _ in 0..5 {
        app.clock.advance(20);
        let reply = app.get("/session", Some(&cookie)).await;
        assert_eq!(reply.data(), json!({"a": 1}));
        assert!(
            reply.cookie_attributes().contains(&"Max-Age=60".to_owned()),
            "every read sends the cookie again with a new expiry"
        );
        cookie = reply.new_cookie();
    }
    let reply = app.get("/session", Some(&cookie)).await;
    assert_eq!(
        reply.session_set_cookie(),
        None,
        "a second read in the same second writes nothing"
    );
    app.clock.advance(60);
    assert!(!is_new(&app, &cookie).await, "60 s after the last read");
    app.clock.advance(61);
    assert!(is_new(&app, &cookie).await);
}

async fn refreshed_on_change_only_a_session_ends_a_max_age_after_the_last_write(store: Store) {
    let app = app_with(store, |s| {
        s.max_age = Some(60);
        s.refresh = Some(Refresh::OnChange);
    })
    .await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    app.clock.advance(45);
    let reply = app.get("/session", Some(&cookie)).await;
    assert_eq!(reply.data(), json!({"a": 1}));
    assert_eq!(
        reply.session_set_cookie(),
        None,
        "a read past half the max age writes nothing"
    );
    app.clock.advance(16);
    assert!(
        is_new(&app, &cookie).await,
        "ended 61 s after the write, reads notwithstanding"
    );
}

async fn a_max_age_added_by_a_deploy_binds_earlier_sessions(store: Store) {
    let before = app_with(store, |s| s.idle_timeout = Some(1_000_000)).await;
    let cookie = before.session_with(r#"{"a": 1}"#).await;
    let after = redeployed(&before, store, |s| s.max_age = Some(60)).await;
    assert!(
        !is_new(&after, &cookie).await,
        "the deploy keeps the session"
    );
    after.clock.advance(61);
    assert!(
        is_new(&after, &cookie).await,
        "a session issued without a max age is bound by the one added"
    );
}

async fn a_max_age_lowered_by_a_deploy_binds_earlier_sessions(store: Store) {
    let before = app_with(store, |s| s.max_age = Some(3600)).await;
    let cookie = before.session_with(r#"{"a": 1}"#).await;
    let after = redeployed(&before, store, |s| s.max_age = Some(60)).await;
    after.clock.advance(61);
    assert!(is_new(&after, &cookie).await);
}

async fn a_max_age_the_session_chose_outlives_a_deploy(store: Store) {
    let before = app_with(store, |s| s.max_age = Some(600)).await;
    let cookie = before.session_with(r#"{"a": 1}"#).await;
    let cookie = before
        .post("/session/max_age", Some(&cookie), r#"{"max_age": 3600}"#)
        .await
        .new_cookie();
    let after = redeployed(&before, store, |s| s.max_age = Some(60)).await;
    after.clock.advance(1000);
    let reply = after.get("/session", Some(&cookie)).await;
    assert_eq!(reply.json()["max_age"], 3600, "the session's own max age");
    assert_eq!(reply.data(), json!({"a": 1}));
}

async fn a_long_own_max_age_outlasts_the_absolute_timeout(store: Store) {
    let app = app_with(store, |s| s.absolute_timeout = Some(100)).await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    let cookie = app
        .post("/session/max_age", Some(&cookie), r#"{"max_age": 1000}"#)
        .await
        .new_cookie();
    // Writes keep it from idling out; the absolute limit is its max age.
    let mut cookie = cookie;
    for n in 0..3 {
        app.clock.advance(300);
        let reply = app.patch(Some(&cookie), &format!(r#"{{"n": {n}}}"#)).await;
        assert_eq!(reply.json()["new"], false, "alive at {} s", 300 * (n + 1));
        cookie = reply.new_cookie();
    }
    app.clock.advance(101);
    assert!(is_new(&app, &cookie).await, "ended 1000 s after it began");
}

async fn a_browser_session_the_handler_chose_keeps_the_idle_timeout(store: Store) {
    let app = app_with(store, |s| {
        s.max_age = Some(3600);
        s.idle_timeout = Some(100);
    })
    .await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    let cookie = app
        .post("/session/max_age", Some(&cookie), r#"{"max_age": null}"#)
        .await
        .new_cookie();
    app.clock.advance(101);
    assert!(
        is_new(&app, &cookie).await,
        "no Max-Age, still an idle limit"
    );
}

async fn remember_me_on_a_browser_session_layer_lasts_two_weeks(store: Store) {
    let app = app_with(store, |_| {}).await;
    let cookie = app.session_with(r#"{"user": "ann"}"#).await;
    let reply = app
        .post("/session/remember", Some(&cookie), r#"{"remember": true}"#)
        .await;
    assert_eq!(reply.json()["max_age"], 14 * 86_400);
    assert!(
        reply
            .cookie_attributes()
            .contains(&format!("Max-Age={}", 14 * 86_400)),
        "a persistent cookie"
    );
    let cookie = reply.new_cookie();
    // Past the default idle (30 min) and absolute (12 h) timeouts.
    app.clock.advance(13 * 86_400);
    let reply = app.get("/session", Some(&cookie)).await;
    assert_eq!(reply.data(), json!({"user": "ann"}), "remembered");
    let cookie = next_cookie(&reply, cookie);
    app.clock.advance(86_400 + 1);
    assert!(
        is_new(&app, &cookie).await,
        "two weeks after the login, however active"
    );
}

async fn not_remembered_is_a_browser_session_cookie_with_the_idle_timeout(store: Store) {
    let app = app_with(store, |s| s.max_age = Some(3600)).await;
    let cookie = app.session_with(r#"{"user": "ann"}"#).await;
    let reply = app
        .post("/session/remember", Some(&cookie), r#"{"remember": false}"#)
        .await;
    assert_eq!(reply.json()["max_age"], json!(null));
    assert!(
        !reply
            .cookie_attributes()
            .iter()
            .any(|a| a.starts_with("Max-Age") || a.starts_with("Expires")),
        "a browser-session cookie"
    );
    let cookie = reply.new_cookie();
    app.clock.advance(30 * 60 + 1);
    assert!(is_new(&app, &cookie).await, "the default idle timeout");
    let reply = app
        .post("/session/remember", Some(&cookie), r#"{"remember": "yes"}"#)
        .await;
    assert_eq!(reply.status, 400);
}

async fn a_session_ends_at_the_time_it_chose(store: Store) {
    let mut settings = settings(store);
    settings.max_age = Some(3600);
    let app = TestApp::conformance_with(settings, |routes| {
        routes.route(
            "/expire_at",
            post(
                |session: Session, Query(at): Query<std::collections::HashMap<String, u64>>| async move {
                    session.expire_at(at.get("at").copied());
                    "ok"
                },
            ),
        )
    })
    .await;
    let cookie = app.session_with(r#"{"a": 1}"#).await;
    let end = session_tests::START + 100;
    let reply = app
        .post(&format!("/expire_at?at={end}"), Some(&cookie), "")
        .await;
    assert!(
        reply
            .cookie_attributes()
            .contains(&"Max-Age=100".to_owned()),
        "the cookie ends with the session: {:?}",
        reply.cookie_attributes()
    );
    let cookie = reply.new_cookie();
    app.clock.advance(100);
    let reply = app.get("/session", Some(&cookie)).await;
    assert_eq!(reply.data(), json!({"a": 1}));
    let cookie = next_cookie(&reply, cookie);
    app.clock.advance(1);
    assert!(is_new(&app, &cookie).await, "ended at the time it chose");
}
