//! Typed sessions over HTTP, against every storage: the typed and dynamic
//! views are one map, stale data reads as missing, and `max_age` applies.

use std::collections::HashMap;

use axum::routing::post;
use serde_json::json;
use session_tests::{Store, TestApp, for_every_storage, is_server_side, settings};
use typed_sessions::{Flash, Session, TypedSession};

for_every_storage!(
    typed_and_dynamic_views_agree_across_requests,
    typed_and_dynamic_views_agree_in_one_request,
    stale_typed_data_reads_as_missing,
    typed_max_age_applies_and_the_smallest_wins,
    typed_write_on_a_new_session_starts_it,
    a_typed_write_that_is_not_json_fails_the_request_and_saves_nothing,
    a_flash_message_that_is_not_json_fails_the_request_and_saves_nothing,
);

async fn typed_and_dynamic_views_agree_across_requests(store: Store) {
    let app = TestApp::conformance(settings(store)).await;
    let empty = app.get("/typed", None).await;
    assert_eq!(empty.json(), json!({"user": null, "visits": 0}));

    let cookie = app
        .session_with(r#"{"visits": 5, "user": "ann", "other": true}"#)
        .await;
    assert_eq!(
        app.get("/typed", Some(&cookie)).await.json(),
        json!({"user": "ann", "visits": 5})
    );

    let reply = app.post("/typed/visit", Some(&cookie), "").await;
    assert_eq!(reply.json(), json!({"user": "ann", "visits": 6}));
    let cookie = reply.new_cookie();
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"visits": 6, "user": "ann", "other": true}),
        "the typed write changed only its key"
    );
    let read = app.get("/typed", Some(&cookie)).await;
    assert!(
        read.set_cookies().is_empty(),
        "a typed read changes nothing"
    );
}

#[derive(Session)]
struct Flags {
    #[session(default)]
    dark: bool,
}

async fn both_views(session: Session, flags: TypedSession<Flags>) -> String {
    session.insert("dark", true).unwrap();
    let seen_typed = flags.dark();
    flags.set_dark(false);
    let seen_dynamic: bool = session.get("dark").unwrap();
    format!("{seen_typed} {seen_dynamic}")
}

async fn typed_and_dynamic_views_agree_in_one_request(store: Store) {
    let app = TestApp::conformance_with(settings(store), |routes| {
        routes.route("/both", post(both_views))
    })
    .await;
    let reply = app.post("/both", None, "").await;
    assert_eq!(reply.body, "true false");
    let cookie = reply.new_cookie();
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"dark": false})
    );
}

async fn stale_typed_data_reads_as_missing(store: Store) {
    let app = TestApp::conformance(settings(store)).await;
    // An older deploy stored these keys with other types.
    let cookie = app.session_with(r#"{"visits": "many", "user": 42}"#).await;
    let reply = app.get("/typed", Some(&cookie)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"user": null, "visits": 0}));
    let reply = app.post("/typed/visit", Some(&cookie), "").await;
    assert_eq!(reply.json(), json!({"user": null, "visits": 1}));
    let cookie = reply.new_cookie();
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"visits": 1, "user": 42}),
        "only the written key was replaced"
    );
}

#[derive(Session)]
#[session(max_age = "2m")]
struct Long {
    #[session(default)]
    long: u32,
}

#[derive(Session)]
#[session(max_age = 60)]
struct Short {
    #[session(default)]
    short: u32,
}

async fn write_long(long: TypedSession<Long>) -> &'static str {
    *long.long_mut() += 1;
    "long"
}

async fn write_both(long: TypedSession<Long>, short: TypedSession<Short>) -> &'static str {
    *short.short_mut() += 1;
    *long.long_mut() += 1;
    "both"
}

async fn typed_max_age_applies_and_the_smallest_wins(store: Store) {
    let app = TestApp::conformance_with(settings(store), |routes| {
        routes
            .route("/long", post(write_long))
            .route("/both", post(write_both))
    })
    .await;
    let reply = app.post("/long", None, "").await;
    assert!(
        reply
            .cookie_attributes()
            .contains(&"Max-Age=120".to_owned()),
        "{:?}",
        reply.cookie_attributes()
    );
    let cookie = reply.new_cookie();
    assert_eq!(
        app.get("/session", Some(&cookie)).await.json()["max_age"],
        120
    );

    let reply = app.post("/both", Some(&cookie), "").await;
    assert!(
        reply.cookie_attributes().contains(&"Max-Age=60".to_owned()),
        "{:?}",
        reply.cookie_attributes()
    );
    let cookie = reply.new_cookie();
    app.clock.advance(61);
    assert_eq!(
        app.get("/session", Some(&cookie)).await.json()["new"],
        true,
        "the typed max age is enforced"
    );
}

async fn typed_write_on_a_new_session_starts_it(store: Store) {
    let app = TestApp::conformance(settings(store)).await;
    let reply = app.post("/typed/visit", None, "").await;
    assert_eq!(reply.json(), json!({"user": null, "visits": 1}));
    let cookie = reply.new_cookie();
    let view = app.get("/session", Some(&cookie)).await.json();
    assert_eq!(view["data"], json!({"visits": 1}));
    assert_eq!(view["identity"].is_string(), is_server_side(store));
}

#[derive(Session)]
struct Grid {
    /// JSON objects have string keys only: this map cannot be serialized.
    #[session(default)]
    cells: HashMap<(u32, u32), u32>,
}

async fn write_grid(session: Session, grid: TypedSession<Grid>) -> &'static str {
    session.insert("other", "written first").unwrap();
    grid.cells_mut().insert((1, 2), 3);
    "looks saved"
}

async fn set_grid(grid: TypedSession<Grid>) -> &'static str {
    grid.set_cells(HashMap::from([((1, 2), 3)]));
    "looks saved"
}

async fn set_whole_grid(grid: TypedSession<Grid>) -> &'static str {
    grid.set(&Grid {
        cells: HashMap::from([((1, 2), 3)]),
    });
    "looks saved"
}

async fn a_typed_write_that_is_not_json_fails_the_request_and_saves_nothing(store: Store) {
    let app = TestApp::conformance_with(settings(store), |routes| {
        routes
            .route("/grid/mut", post(write_grid))
            .route("/grid/set", post(set_grid))
            .route("/grid/whole", post(set_whole_grid))
    })
    .await;
    let cookie = app.session_with(r#"{"kept": 1}"#).await;
    for route in ["/grid/mut", "/grid/set", "/grid/whole"] {
        for cookie in [None, Some(cookie.as_str())] {
            let reply = app.post(route, cookie, "").await;
            assert_eq!(reply.status, 500, "{route}: {}", reply.body);
            assert_ne!(reply.body, "looks saved", "{route}");
            assert!(
                reply.set_cookies().is_empty(),
                "{route}: the cookie is untouched"
            );
        }
    }
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"kept": 1}),
        "nothing of the refused requests was written"
    );
}

async fn flash_unserializable(flash: Flash<HashMap<(u32, u32), u32>>) -> &'static str {
    flash.push(HashMap::from([((1, 2), 3)]));
    "looks saved"
}

async fn a_flash_message_that_is_not_json_fails_the_request_and_saves_nothing(store: Store) {
    let app = TestApp::conformance_with(settings(store), |routes| {
        routes.route("/flash/bad", post(flash_unserializable))
    })
    .await;
    let cookie = app.session_with(r#"{"kept": 1}"#).await;
    let reply = app.post("/flash/bad", Some(&cookie), "").await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert!(reply.set_cookies().is_empty());
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"kept": 1})
    );
}
