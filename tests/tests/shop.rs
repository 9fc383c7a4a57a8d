//! The typed shop's "your sessions" page and back office, over HTTP as a
//! browser's form posts reach them (the browser test clicks the rest).

use reqwest::Method;
use session_tests::TestApp;
use typed_sessions::{MemoryStorage, SessionLayer, clock::ManualClock, storage::AnyStorage};

async fn shop() -> TestApp {
    let storage = MemoryStorage::new();
    let router = session_examples::shop::app(SessionLayer::new(storage.clone()));
    TestApp::serve(
        router,
        "__Host-session".into(),
        ManualClock::new(0),
        AnyStorage::new(storage),
    )
    .await
}

/// Signs `name` in from a browser of its own; its session cookie.
async fn sign_in(app: &TestApp, name: &str, agent: &str) -> String {
    let reply = app
        .send_with_headers(
            Method::POST,
            "/login",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("user-agent", agent),
            ],
            Some(&format!("name={name}")),
        )
        .await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    reply.new_cookie()
}

#[tokio::test]
async fn a_shopper_sees_their_devices_and_signs_out_everywhere() {
    let app = shop().await;
    let laptop = sign_in(&app, "ann", "Laptop browser").await;
    let phone = sign_in(&app, "ann", "Phone browser").await;
    let page = app.get("/sessions", Some(&laptop)).await;
    assert!(page.body.contains("2 active session(s)"), "{}", page.body);
    assert!(page.body.contains("Laptop browser") && page.body.contains("Phone browser"));

    let reply = app.post("/sessions/revoke", Some(&phone), "").await;
    assert_eq!(reply.status, 303);
    for cookie in [&laptop, &phone] {
        let home = app.get("/", Some(cookie)).await;
        assert!(home.body.contains("Hello guest."), "signed out everywhere");
    }
}

#[tokio::test]
async fn the_back_office_keeps_a_session_of_its_own() {
    let app = shop().await;
    let shopper = sign_in(&app, "ann", "Laptop browser").await;
    let shop_cookie = format!("__Host-session={shopper}");
    let reply = app
        .send_with_headers(
            Method::POST,
            "/admin/login",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &shop_cookie),
            ],
            Some("name=olga"),
        )
        .await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    let set_cookies = reply.set_cookies();
    assert_eq!(
        set_cookies.len(),
        1,
        "only the back office's: {set_cookies:?}"
    );
    let operator = set_cookies[0]
        .strip_prefix("__Host-session_admin=")
        .and_then(|rest| rest.split(';').next())
        .expect("the back office's cookie")
        .to_owned();
    assert_ne!(operator, shopper);
    let page = app
        .send_with_cookies(
            Method::GET,
            "/admin",
            &[
                ("__Host-session", shopper.as_str()),
                ("__Host-session_admin", operator.as_str()),
            ],
            None,
            "__Host-session_admin",
        )
        .await;
    assert!(page.body.contains("olga is on duty"), "{}", page.body);
    // The shopper's cookie alone opens no back office.
    let page = app.get("/admin", Some(&shopper)).await;
    assert!(
        page.body.contains("Sign in to the back office"),
        "{}",
        page.body
    );
}
