//! Sessions carried in headers for API clients (`SESSION_TRANSPORT=header`
//! and `both`), on every server-side storage; cookie storages refuse them.

use reqwest::Method;
use serde_json::json;
use session_examples::conformance::{Settings, Store};
use session_tests::{Reply, TestApp, for_every_storage, is_server_side, settings};
use typed_sessions::Transport;

for_every_storage!(
    a_header_session_travels_as_a_bearer_token_and_never_as_a_cookie,
    an_ended_header_session_sends_an_empty_token,
    tokens_are_never_adopted_and_need_the_bearer_scheme,
    renewal_sends_the_new_token,
    one_app_serves_browsers_and_api_clients_on_one_storage,
    cookie_storages_refuse_header_transport,
    a_request_with_two_authorization_headers_carries_no_token,
);

async fn a_request_with_two_authorization_headers_carries_no_token(store: Store) {
    let Some(app) = app(store, Transport::Header).await else {
        return;
    };
    let reply = app
        .send_with_headers(Method::PATCH, "/session", &[], Some(r#"{"user": "ann"}"#))
        .await;
    let issued = token(&reply).expect("a new session's token");
    let bearer = format!("Bearer {issued}");
    // An intermediary that reads the other header would disagree with us
    // about who is signed in: neither is taken.
    for other in ["Bearer someone-else", "Basic YWxhZGRpbjpvcGVuc2VzYW1l"] {
        let reply = app
            .send_with_headers(
                Method::GET,
                "/session",
                &[("authorization", &bearer), ("authorization", other)],
                None,
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["new"], true, "{other}: no token was read");
        assert_eq!(reply.data(), json!({}));
    }
    let alone = with_token(&app, Method::GET, "/session", &issued, None).await;
    assert_eq!(
        alone.data(),
        json!({"user": "ann"}),
        "alone, it still works"
    );
}

async fn app(store: Store, transport: Transport) -> Option<TestApp> {
    if !is_server_side(store) {
        return None;
    }
    let mut settings: Settings = settings(store);
    settings.transport = transport;
    Some(TestApp::conformance(settings).await)
}

async fn with_token(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> Reply {
    let bearer = format!("Bearer {token}");
    app.send_with_headers(method, path, &[("authorization", &bearer)], body)
        .await
}

fn token(reply: &Reply) -> Option<String> {
    reply
        .headers
        .get("session-token")
        .map(|value| value.to_str().unwrap().to_owned())
}

async fn a_header_session_travels_as_a_bearer_token_and_never_as_a_cookie(store: Store) {
    let Some(app) = app(store, Transport::Header).await else {
        return;
    };
    let reply = app
        .send_with_headers(Method::PATCH, "/session", &[], Some(r#"{"user": "ann"}"#))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.set_cookies().is_empty(), "no cookie in header mode");
    let issued = token(&reply).expect("a new session's token");
    assert_eq!(issued.len(), 43, "a 256-bit id: {issued}");
    let vary: Vec<_> = reply.headers.get_all("vary").iter().collect();
    assert!(
        vary.iter()
            .any(|v| v.to_str().unwrap().eq_ignore_ascii_case("authorization")),
        "Vary names the header: {vary:?}"
    );
    assert_eq!(
        reply
            .headers
            .get_all("cache-control")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect::<Vec<_>>(),
        ["no-store"],
        "a token is a credential: no cache keeps it, the client's own included"
    );
    let reply = with_token(&app, Method::GET, "/session", &issued, None).await;
    assert_eq!(reply.data(), json!({"user": "ann"}));
    assert_eq!(token(&reply), None, "an unchanged session sends nothing");
    let reply = with_token(
        &app,
        Method::PATCH,
        "/session",
        &issued,
        Some(r#"{"n": 1}"#),
    )
    .await;
    assert_eq!(reply.data(), json!({"user": "ann", "n": 1}));
    // A cookie holding the id is not read in header mode.
    let reply = app.get("/session", Some(&issued)).await;
    assert_eq!(reply.json()["new"], true);
}

async fn an_ended_header_session_sends_an_empty_token(store: Store) {
    let Some(app) = app(store, Transport::Header).await else {
        return;
    };
    let issued = token(
        &app.send_with_headers(Method::PATCH, "/session", &[], Some(r#"{"a": 1}"#))
            .await,
    )
    .unwrap();
    let reply = with_token(&app, Method::POST, "/session/invalidate", &issued, None).await;
    assert_eq!(
        token(&reply).as_deref(),
        Some(""),
        "the ended token is announced"
    );
    assert!(reply.set_cookies().is_empty());
    let reply = with_token(&app, Method::GET, "/session", &issued, None).await;
    assert_eq!(reply.json()["new"], true, "the old token opens nothing");
}

async fn tokens_are_never_adopted_and_need_the_bearer_scheme(store: Store) {
    let Some(app) = app(store, Transport::Header).await else {
        return;
    };
    let forged = "A".repeat(43);
    let reply = with_token(
        &app,
        Method::PATCH,
        "/session",
        &forged,
        Some(r#"{"a": 1}"#),
    )
    .await;
    let issued = token(&reply).expect("a new session");
    assert_ne!(issued, forged, "a client never chooses its id");
    let basic = format!("Basic {issued}");
    let reply = app
        .send_with_headers(Method::GET, "/session", &[("authorization", &basic)], None)
        .await;
    assert_eq!(
        reply.json()["new"],
        true,
        "only the Bearer scheme carries a token"
    );
    let reply = app
        .send_with_headers(
            Method::GET,
            "/session",
            &[("authorization", "Bearer not an id")],
            None,
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["new"], true);
}

async fn renewal_sends_the_new_token(store: Store) {
    let Some(app) = app(store, Transport::Header).await else {
        return;
    };
    let first = token(
        &app.send_with_headers(Method::PATCH, "/session", &[], Some(r#"{"a": 1}"#))
            .await,
    )
    .unwrap();
    let reply = with_token(
        &app,
        Method::POST,
        "/session/login",
        &first,
        Some(r#"{"user": "ann"}"#),
    )
    .await;
    let second = token(&reply).expect("the renewed session's token");
    assert_ne!(first, second);
    assert_eq!(
        with_token(&app, Method::GET, "/session", &second, None)
            .await
            .data(),
        json!({"user": "ann"})
    );
    assert_eq!(
        with_token(&app, Method::GET, "/session", &first, None)
            .await
            .json()["new"],
        true
    );
}

async fn one_app_serves_browsers_and_api_clients_on_one_storage(store: Store) {
    let Some(app) = app(store, Transport::Both).await else {
        return;
    };
    let reply = app.patch(None, r#"{"who": "new"}"#).await;
    let cookie = reply.new_cookie();
    let issued = token(&reply).expect("a new session is offered both ways");
    assert_eq!(cookie, issued, "one session, one id");
    // The browser goes on with its cookie and gets only cookies back.
    let reply = app.patch(Some(&cookie), r#"{"browser": 1}"#).await;
    assert!(reply.session_set_cookie().is_some());
    assert_eq!(token(&reply), None);
    // An API client with a token of its own gets only tokens back.
    let api = token(
        &app.send_with_headers(Method::PATCH, "/session", &[], Some(r#"{"api": 1}"#))
            .await,
    )
    .unwrap();
    let reply = with_token(&app, Method::PATCH, "/session", &api, Some(r#"{"n": 2}"#)).await;
    assert!(reply.set_cookies().is_empty());
    assert_eq!(token(&reply).as_deref(), Some(api.as_str()));
    assert_eq!(reply.data(), json!({"api": 1, "n": 2}));
    let vary: Vec<String> = reply
        .headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_lowercase())
        .collect();
    assert!(
        vary.contains(&"cookie".to_owned()) && vary.contains(&"authorization".to_owned()),
        "{vary:?}"
    );
}

async fn cookie_storages_refuse_header_transport(store: Store) {
    if is_server_side(store) {
        return;
    }
    let mut settings = settings(store);
    settings.transport = Transport::Header;
    let storage = settings.storage().await.unwrap();
    let error = settings
        .layer_with(storage, typed_sessions::clock::ManualClock::new(0))
        .expect_err("a cookie storage cannot hand out tokens");
    assert!(error.contains("server-side storage"), "{error}");
}
