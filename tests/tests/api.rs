//! The `api` example as a mobile client uses it: bearer tokens, no cookies.

use axum::http::HeaderMap;
use reqwest::Method;
use serde_json::json;
use session_tests::TestApp;
use typed_sessions::{MemoryStorage, clock::ManualClock, storage::AnyStorage};

async fn api() -> TestApp {
    let storage = MemoryStorage::new();
    let router = session_examples::api::app(storage.clone());
    TestApp::serve(
        router,
        "session".into(),
        ManualClock::new(0),
        AnyStorage::new(storage),
    )
    .await
}

fn token(headers: &HeaderMap) -> String {
    headers
        .get("session-token")
        .expect("a Session-Token header")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_client_signs_in_calls_lists_and_signs_out_with_tokens() {
    let app = api().await;
    let auth = |token: &str| format!("Bearer {token}");
    let login = app
        .send_with_headers(
            Method::POST,
            "/login",
            &[("content-type", "application/json")],
            Some(r#"{"user": "ann"}"#),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(login.set_cookies().is_empty(), "an API sets no cookie");
    let phone = token(&login.headers);
    let laptop = token(
        &app.send_with_headers(
            Method::POST,
            "/login",
            &[("content-type", "application/json")],
            Some(r#"{"user": "ann"}"#),
        )
        .await
        .headers,
    );
    for n in 1..=2 {
        let reply = app
            .send_with_headers(
                Method::GET,
                "/me",
                &[("authorization", &auth(&phone))],
                None,
            )
            .await;
        assert_eq!(reply.json(), json!({"user": "ann", "calls": n}));
    }
    let reply = app.send_with_headers(Method::GET, "/me", &[], None).await;
    assert_eq!(reply.status, 401, "no token, no user");
    let listed = app
        .send_with_headers(
            Method::GET,
            "/me/sessions",
            &[("authorization", &auth(&phone))],
            None,
        )
        .await;
    assert_eq!(listed.json()["sessions"].as_array().unwrap().len(), 2);

    let logout = app
        .send_with_headers(
            Method::POST,
            "/logout",
            &[("authorization", &auth(&laptop))],
            None,
        )
        .await;
    assert_eq!(logout.status, 204);
    assert_eq!(token(&logout.headers), "", "the ended token is announced");
    let reply = app
        .send_with_headers(
            Method::GET,
            "/me",
            &[("authorization", &auth(&laptop))],
            None,
        )
        .await;
    assert_eq!(reply.status, 401);

    let revoked = app
        .send_with_headers(
            Method::POST,
            "/me/sessions/revoke",
            &[("authorization", &auth(&phone))],
            None,
        )
        .await;
    assert_eq!(
        revoked.json(),
        json!({"revoked": 1}),
        "only the phone was left"
    );
    let reply = app
        .send_with_headers(
            Method::GET,
            "/me",
            &[("authorization", &auth(&phone))],
            None,
        )
        .await;
    assert_eq!(reply.status, 401, "logged out everywhere");
}
