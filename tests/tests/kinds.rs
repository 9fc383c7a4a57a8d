//! Several independent sessions in one app, on every storage: the
//! conformance app's admin session beside its main one, on the same store.

use axum::routing::get;
use reqwest::Method;
use serde_json::json;
use session_examples::conformance::{Admin, Store};
use session_tests::{Reply, TestApp, for_every_storage, settings};
use typed_sessions::{Session, SessionLayer};

for_every_storage!(
    the_admin_session_has_its_own_cookie_and_data,
    one_kinds_cookie_moved_to_the_others_name_opens_nothing,
    the_extractor_of_a_kind_without_its_layer_names_the_kind,
);

async fn app(store: Store) -> TestApp {
    TestApp::conformance(settings(store)).await
}

fn admin_cookie(app: &TestApp) -> String {
    format!("{}_admin", app.cookie_name())
}

async fn admin(
    app: &TestApp,
    method: Method,
    cookies: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    app.send_with_cookies(method, "/admin/session", cookies, body, &admin_cookie(app))
        .await
}

async fn the_admin_session_has_its_own_cookie_and_data(store: Store) {
    let app = app(store).await;
    let main = app.session_with(r#"{"user": "ann"}"#).await;
    let admin_name = admin_cookie(&app);
    let main_pair = (app.cookie_name(), main.as_str());
    let reply = admin(
        &app,
        Method::PATCH,
        &[main_pair],
        Some(r#"{"user": "root"}"#),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json()["new"],
        true,
        "the main cookie starts no admin session"
    );
    assert_eq!(
        reply.set_cookies().len(),
        1,
        "only the admin cookie is set: {:?}",
        reply.set_cookies()
    );
    let admin_value = reply.new_cookie();
    let both = [main_pair, (admin_name.as_str(), admin_value.as_str())];
    let reply = admin(&app, Method::GET, &both, None).await;
    assert_eq!(reply.data(), json!({"user": "root"}));
    let reply = app
        .send_with_cookies(Method::GET, "/session", &both, None, app.cookie_name())
        .await;
    assert_eq!(
        reply.data(),
        json!({"user": "ann"}),
        "neither reads the other"
    );
    assert_eq!(
        reply.headers.get_all("vary").iter().count(),
        1,
        "one Vary: Cookie for two layers"
    );
}

async fn one_kinds_cookie_moved_to_the_others_name_opens_nothing(store: Store) {
    let app = app(store).await;
    let main = app.session_with(r#"{"user": "ann"}"#).await;
    let admin_name = admin_cookie(&app);
    // A client that copies its main cookie into the admin cookie's name
    // must not become an admin named ann.
    let reply = admin(
        &app,
        Method::GET,
        &[(admin_name.as_str(), main.as_str())],
        None,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["new"], true);
    assert_eq!(reply.data(), json!({}));
    // Nor the other way round.
    let root = admin(&app, Method::PATCH, &[], Some(r#"{"user": "root"}"#))
        .await
        .new_cookie();
    let reply = app.get("/session", Some(&root)).await;
    assert_eq!(reply.json()["new"], true);
    assert_eq!(reply.data(), json!({}));
}

async fn the_extractor_of_a_kind_without_its_layer_names_the_kind(store: Store) {
    let app_settings = settings(store);
    let storage = app_settings.storage().await.unwrap();
    let layer: SessionLayer = app_settings
        .layer_with(storage.clone(), typed_sessions::clock::ManualClock::new(0))
        .unwrap();
    let cookie_name = layer.cookie_name().to_owned();
    let router = axum::Router::new()
        .route("/admin", get(|_: Session<Admin>| async { "unreachable" }))
        .layer(layer);
    let app = TestApp::serve(
        router,
        cookie_name,
        typed_sessions::clock::ManualClock::new(0),
        storage,
    )
    .await;
    let reply = app.get("/admin", None).await;
    assert_eq!(reply.status, 500);
    assert!(
        reply.body.contains("`admin`") && reply.body.contains(".with_kind::<"),
        "{}",
        reply.body
    );
}
