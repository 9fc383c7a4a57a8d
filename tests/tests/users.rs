//! Sessions bound to users, on every storage: "your active sessions" and
//! "log out everywhere" where the storage can index (memory, Redis, Redis
//! Cluster, PostgreSQL, SQLite), and a plain refusal where it cannot (Memcached, cookies).

use reqwest::Method;
use serde_json::json;
use session_examples::conformance::Store;
use session_tests::{TestApp, for_every_storage, is_server_side, settings};

for_every_storage!(
    a_user_sees_and_revokes_all_their_sessions,
    binding_a_user_renews_the_session,
    ended_sessions_are_not_listed,
    one_session_is_revoked_by_its_handle_by_its_own_user_only,
    storages_that_cannot_index_say_so,
    binding_a_session_with_no_data_saves_it,
    the_readme_login_signs_the_user_in,
    unbinding_takes_the_session_out_of_the_listing,
    user_ids_no_store_can_hold_are_refused_before_the_store,
    clearing_a_bound_session_signs_it_out,
    binding_a_user_id_no_store_can_hold_fails_the_request,
    a_revocation_ends_sessions_renewed_and_listed_while_it_runs,
    each_kind_lists_and_revokes_only_its_own_sessions,
    renewals_raced_by_listing_keep_their_session,
    sessions_no_store_indexes_are_revoked_by_a_count,
);

/// aiohttp_session's cookie formats keep the binding's mark too (they lost
/// it, so after one revocation every new login read as revoked).
#[tokio::test]
async fn aiohttp_cookies_are_revoked_by_a_count_and_new_logins_live() {
    sessions_no_store_indexes_are_revoked_by_a_count(Store::AiohttpEncrypted).await;
    sessions_no_store_indexes_are_revoked_by_a_count(Store::AiohttpNacl).await;
}

/// aiohttp_session's Redis and Memcached records, shared with a Python
/// service, end by a mark of their own as Memcached's do, and cannot be
/// listed.
#[tokio::test]
async fn aiohttp_server_records_are_revoked_by_a_mark_and_new_logins_live() {
    for store in [Store::AiohttpRedis, Store::AiohttpMemcached] {
        sessions_no_store_indexes_are_revoked_by_a_count(store).await;
        storages_that_cannot_index_say_so(store).await;
    }
}

/// Loads the session, waits, then renews it and writes to it: a request
/// that loaded the session before a revocation and saves after it.
async fn slow_write(session: typed_sessions::Session) {
    let _ = session.user();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    session.renew();
    session.insert("late", true).expect("a JSON value");
}

/// "Log out everywhere" where no store indexes the sessions: the cookie
/// storages under a revocation state in memory and in Redis, and
/// Memcached with its own counts. Every session of the user stops opening
/// (the conformance app answers `{"revoked": null}`: these cannot count
/// them), another user's stays, a session a request in flight wrote after
/// the revocation stays revoked, and a login after it lives. With a shared
/// state (Redis, Memcached), a second instance refuses them too.
async fn sessions_no_store_indexes_are_revoked_by_a_count(store: Store) {
    use session_examples::conformance::Revocation;

    let states = match store {
        Store::Simple | Store::Encrypted | Store::AiohttpEncrypted | Store::AiohttpNacl => {
            vec![Some(Revocation::Memory), Some(Revocation::Redis)]
        }
        Store::Memcached | Store::AiohttpRedis | Store::AiohttpMemcached => vec![None],
        _ => return,
    };
    for revocation in states {
        let mut settings = settings(store);
        settings.secret = Some(typed_sessions::EncryptionKey::generate());
        if revocation.is_some() {
            settings.redis_url = session_tests::servers::shared_redis().url();
        }
        settings.revocation = revocation;
        let settings = settings
            .connect_revocations()
            .await
            .expect("the state connects");
        let app = TestApp::conformance_with(settings.clone(), |routes| {
            routes.route("/slow-write", axum::routing::post(slow_write))
        })
        .await;
        let (ann, bob) = (user("ann"), user("bob"));
        let laptop = app.login(&ann).await;
        let phone = app.login(&ann).await;
        let bobs = app.login(&bob).await;
        let (revoked, late) = app.revoke_during("/slow-write", &phone, &ann).await;
        assert_eq!(revoked.status, 200, "{revocation:?}: {}", revoked.body);
        assert_eq!(revoked.json(), json!({"revoked": null}));
        assert_eq!(late.status, 200, "{}", late.body);
        let late_cookie = late.cookie_value();
        // Stores that find the revocation when the renewal deletes the old
        // record (aiohttp_session's) send no cookie at all; the others a
        // cookie that never opens.
        let mut ended = vec![("laptop", &laptop), ("phone", &phone)];
        ended.extend(late_cookie.as_ref().map(|cookie| ("late write", cookie)));
        for (what, cookie) in ended {
            let view = app.get("/session", Some(cookie)).await.json();
            assert_eq!(
                view["new"], true,
                "{revocation:?}: the {what} cookie still opens: {view}"
            );
        }
        assert_eq!(
            app.get("/session", Some(&bobs)).await.data(),
            json!({"cart": [1]})
        );
        let after = app.login(&ann).await;
        assert_eq!(app.get("/session", Some(&after)).await.json()["new"], false);

        if revocation != Some(Revocation::Memory) {
            // Another instance on the same key and state.
            let other = TestApp::conformance(settings.clone()).await;
            let elsewhere = other.login(&ann).await;
            assert_eq!(
                other.get("/session", Some(&after)).await.json()["new"],
                false
            );
            let revoked = other.post(&format!("/users/{ann}/revoke"), None, "").await;
            assert_eq!(revoked.status, 200, "{}", revoked.body);
            for cookie in [&after, &elsewhere] {
                assert_eq!(app.get("/session", Some(cookie)).await.json()["new"], true);
                assert_eq!(
                    other.get("/session", Some(cookie)).await.json()["new"],
                    true
                );
            }
        }
    }
}

/// A signed-in client that keeps renewing its session while "your
/// sessions" is polled keeps it every time: a listing that prunes the
/// entries of records gone must not take the entry of a record being
/// renewed, which the renewal would read as a revocation and sign the
/// user out.
async fn renewals_raced_by_listing_keep_their_session(store: Store) {
    if !indexes(store) {
        return;
    }
    let settings = settings(store);
    on_two_threads(async move {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

        let app = Arc::new(TestApp::conformance(settings).await);
        let ann = user("ann");
        let mut cookie = app.login(&ann).await;
        let stop = Arc::new(AtomicBool::new(false));
        let listers: Vec<_> = (0..2)
            .map(|_| {
                let (app, ann, stop) = (app.clone(), ann.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(SeqCst) {
                        let listed = app.get(&format!("/users/{ann}/sessions"), None).await;
                        assert_eq!(listed.status, 200, "{}", listed.body);
                    }
                })
            })
            .collect();
        let body = json!({ "user": ann }).to_string();
        for renewal in 0..300 {
            let reply = app.post("/session/bind", Some(&cookie), &body).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            assert!(
                reply.session_set_cookie().is_some(),
                "renewal {renewal} signed the user out"
            );
            assert_eq!(reply.json()["new"], false, "renewal {renewal}");
            cookie = reply.new_cookie();
        }
        stop.store(true, SeqCst);
        for lister in listers {
            lister.await.expect("the lister ran");
        }
        assert_eq!(
            app.get("/session", Some(&cookie)).await.data(),
            json!({"cart": [1]})
        );
    })
    .await;
}

/// Runs `test` on a runtime of two threads, so that calls that never wait
/// (the memory store's) really overlap, as they do in an app.
async fn on_two_threads(test: impl std::future::Future<Output = ()> + Send + 'static) {
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(test);
    })
    .await
    .expect("the test ran");
}

/// Binds the admin session (the conformance app's second kind) to `user`.
async fn admin_bind(
    session: typed_sessions::Session<session_examples::conformance::Admin>,
    axum::extract::Path(user): axum::extract::Path<String>,
) {
    session.insert("role", "admin").expect("a JSON value");
    session.bind_user(user);
}

async fn admin_sessions(
    sessions: typed_sessions::UserSessions<session_examples::conformance::Admin>,
    axum::extract::Path(user): axum::extract::Path<String>,
) -> String {
    sessions
        .of(&user)
        .await
        .expect("the store lists")
        .len()
        .to_string()
}

async fn admin_revoke(
    sessions: typed_sessions::UserSessions<session_examples::conformance::Admin>,
    axum::extract::Path(user): axum::extract::Path<String>,
) -> String {
    sessions
        .revoke(&user)
        .await
        .expect("the store revokes")
        .map_or_else(|| "?".to_owned(), |n| n.to_string())
}

async fn admin_view(app: &TestApp, name: &str, value: &str) -> serde_json::Value {
    app.send_with_cookies(Method::GET, "/admin/session", &[(name, value)], None, name)
        .await
        .json()
}

/// The same user id signed in to the main kind and to the admin kind on
/// one store: each kind's listing shows, and its revocation ends, only its
/// own session (they listed and revoked each other's before).
async fn each_kind_lists_and_revokes_only_its_own_sessions(store: Store) {
    if !indexes(store) {
        return;
    }
    let app = TestApp::conformance_with(settings(store), |routes| {
        routes
            .route("/admin/bind/{user}", axum::routing::post(admin_bind))
            .route(
                "/admin/users/{user}/sessions",
                axum::routing::get(admin_sessions),
            )
            .route(
                "/admin/users/{user}/revoke",
                axum::routing::post(admin_revoke),
            )
    })
    .await;
    let ann = user("ann");
    let main = app.login(&ann).await;
    let admin_name = format!("{}_admin", app.cookie_name());
    let admin = app
        .send_with_cookies(
            Method::POST,
            &format!("/admin/bind/{ann}"),
            &[],
            None,
            &admin_name,
        )
        .await;
    assert_eq!(admin.status, 200, "{}", admin.body);
    let admin = admin.new_cookie();
    let listed = app
        .get(&format!("/users/{ann}/sessions"), None)
        .await
        .json();
    assert_eq!(
        listed["sessions"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let admins = app.get(&format!("/admin/users/{ann}/sessions"), None).await;
    assert_eq!(admins.body, "1");

    let revoked = app
        .post(&format!("/users/{ann}/revoke"), None, "")
        .await
        .json();
    assert_eq!(revoked, json!({"revoked": 1}), "only the main session");
    assert_eq!(app.get("/session", Some(&main)).await.json()["new"], true);
    let view = admin_view(&app, &admin_name, &admin).await;
    assert_eq!(
        view["data"],
        json!({"role": "admin"}),
        "the admin session lives: {view}"
    );

    let revoked = app
        .post(&format!("/admin/users/{ann}/revoke"), None, "")
        .await;
    assert_eq!(revoked.body, "1");
    let view = admin_view(&app, &admin_name, &admin).await;
    assert_eq!(view["new"], true, "{view}");
    assert_eq!(
        app.get(&format!("/admin/users/{ann}/sessions"), None)
            .await
            .body,
        "0"
    );
}

/// "Log out everywhere" while thieves keep renewing the sessions they stole
/// (binding again renews the id and carries the data to it) and someone
/// keeps listing the user's sessions: every session bound before the
/// revocation answered is over, in every round, and a login after it lives.
///
/// Before the revocation took the user's index atomically, a renewal that
/// ran between its reading of the index and its deletion of the old record
/// escaped on Redis and Redis Cluster, and a listing that ran meanwhile
/// hid every session from it on the memory store.
async fn a_revocation_ends_sessions_renewed_and_listed_while_it_runs(store: Store) {
    if !indexes(store) {
        return;
    }
    on_two_threads(revocation_race(settings(store))).await;
}

async fn revocation_race(settings: session_examples::conformance::Settings) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

    let app = Arc::new(TestApp::conformance(settings).await);
    for round in 0..6 {
        let ann = user("ann");
        let mut cookies = Vec::new();
        for _ in 0..100 {
            cookies.push(app.login(&ann).await);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thieves: Vec<_> = cookies
            .iter()
            .step_by(5)
            .cloned()
            .map(|mut cookie| {
                let (app, ann, stop) = (app.clone(), ann.clone(), stop.clone());
                tokio::spawn(async move {
                    let body = json!({ "user": ann }).to_string();
                    while !stop.load(SeqCst) {
                        let reply = app.post("/session/bind", Some(&cookie), &body).await;
                        assert_eq!(reply.status, 200, "{}", reply.body);
                        // No cookie: the renewal found its session ended and
                        // carried nothing.
                        if reply.session_set_cookie().is_none() {
                            break;
                        }
                        // A new session: the stolen one had ended, and this
                        // was a fresh login after the revocation (which a
                        // thief could not make); it lives.
                        if reply.json()["new"] == true {
                            return (cookie, 1);
                        }
                        cookie = reply.new_cookie();
                    }
                    (cookie, 0)
                })
            })
            .collect();
        let lister = {
            let (app, ann, stop) = (app.clone(), ann.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(SeqCst) {
                    let listed = app.get(&format!("/users/{ann}/sessions"), None).await;
                    assert_eq!(listed.status, 200, "{}", listed.body);
                }
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let revoked = app.post(&format!("/users/{ann}/revoke"), None, "").await;
        assert_eq!(revoked.status, 200, "{}", revoked.body);
        stop.store(true, SeqCst);
        let after = app.login(&ann).await;
        let (mut survivors, mut fresh_logins) = (0, 0);
        for thief in thieves {
            let (cookie, fresh) = thief.await.expect("the thief ran");
            fresh_logins += fresh;
            survivors +=
                usize::from(app.get("/session", Some(&cookie)).await.json()["new"] == false);
        }
        for cookie in &cookies {
            survivors +=
                usize::from(app.get("/session", Some(cookie)).await.json()["new"] == false);
        }
        lister.await.expect("the lister ran");
        assert_eq!(
            survivors, 0,
            "round {round}: sessions bound before the revocation survived it ({revoked:?})"
        );
        assert_eq!(app.get("/session", Some(&after)).await.json()["new"], false);
        let listed = app
            .get(&format!("/users/{ann}/sessions"), None)
            .await
            .json();
        assert_eq!(
            listed["sessions"].as_array().map(Vec::len),
            Some(1 + fresh_logins),
            "{listed}"
        );
    }
}

async fn clear(session: typed_sessions::Session) {
    session.clear();
}

async fn clearing_a_bound_session_signs_it_out(store: Store) {
    let app = TestApp::conformance_with(settings(store), |routes| {
        routes
            .route("/clear", axum::routing::post(clear))
            .route("/whoami", axum::routing::get(whoami))
    })
    .await;
    let ann = user("ann");
    let cookie = app.login(&ann).await;
    let reply = app.post("/clear", Some(&cookie), "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.set_cookies().iter().any(|c| c.contains("Max-Age=0")),
        "the cookie is removed: {:?}",
        reply.set_cookies()
    );
    // A cookie storage cannot end the cookie it issued (the README says
    // so); a server-side store deleted the record.
    if is_server_side(store) {
        assert_eq!(app.get("/whoami", Some(&cookie)).await.body, "None");
    }
    if indexes(store) {
        let listed = app
            .get(&format!("/users/{ann}/sessions"), None)
            .await
            .json();
        assert_eq!(listed["sessions"], json!([]), "{listed}");
    }
}

async fn binding_a_user_id_no_store_can_hold_fails_the_request(store: Store) {
    let app = TestApp::conformance(settings(store)).await;
    let cookie = app.session_with(r#"{"cart": [1]}"#).await;
    let reply = app
        .post("/session/bind", Some(&cookie), r#"{"user": "ann\u0000"}"#)
        .await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert!(reply.set_cookies().is_empty(), "the cookie is untouched");
    let view = app.get("/session", Some(&cookie)).await.json();
    assert_eq!(view["data"], json!({"cart": [1]}), "{view}");
    assert_eq!(view["new"], false, "the session lives on, unbound");
}

async fn user_ids_no_store_can_hold_are_refused_before_the_store(store: Store) {
    if !indexes(store) {
        return;
    }
    let app = TestApp::conformance(settings(store)).await;
    let long = "u".repeat(1025);
    // PostgreSQL answered a NUL with a 503, an answer that invites retries
    // forever; every store now answers 400 before asking the store.
    for bad in ["%00", "ann%00", long.as_str()] {
        let listed = app.get(&format!("/users/{bad}/sessions"), None).await;
        assert_eq!(listed.status, 400, "{bad}: {}", listed.body);
        assert!(listed.body.contains("user id"), "{}", listed.body);
        let revoked = app.post(&format!("/users/{bad}/revoke"), None, "").await;
        assert_eq!(revoked.status, 400, "{bad}: {}", revoked.body);
    }
    let ann = user("ann");
    let cookie = app.login(&ann).await;
    for handle in ["%00", "short", &"A".repeat(44)] {
        let reply = app
            .post(&format!("/users/{ann}/sessions/{handle}/revoke"), None, "")
            .await;
        assert_eq!(reply.status, 200, "{handle}: {}", reply.body);
        assert_eq!(reply.json()["revoked"], 0, "{handle}");
    }
    assert_eq!(
        app.get("/session", Some(&cookie)).await.json()["new"],
        false
    );
}

/// The README's login handler, as written: `bind_user` and nothing else.
async fn readme_login(session: typed_sessions::Session) {
    session.bind_user("user-42"); // also renews the session id
}

async fn whoami(session: typed_sessions::Session) -> String {
    format!("{:?}", session.user())
}

async fn unbind(session: typed_sessions::Session) {
    session.unbind_user();
}

async fn binding_a_session_with_no_data_saves_it(store: Store) {
    let app = TestApp::conformance(settings(store)).await;
    let ann = user("ann");
    let reply = app
        .post("/session/bind", None, &json!({ "user": ann }).to_string())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let cookie = reply.new_cookie();
    let view = app.get("/session", Some(&cookie)).await.json();
    assert_eq!(view["new"], false, "the bound session was saved: {view}");
    if indexes(store) {
        let listed = app
            .get(&format!("/users/{ann}/sessions"), None)
            .await
            .json();
        assert_eq!(listed["sessions"].as_array().unwrap().len(), 1, "{listed}");
    }
}

async fn the_readme_login_signs_the_user_in(store: Store) {
    let app = TestApp::conformance_with(settings(store), |routes| {
        routes
            .route("/login", axum::routing::post(readme_login))
            .route("/whoami", axum::routing::get(whoami))
    })
    .await;
    let reply = app.post("/login", None, "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let cookie = reply.new_cookie();
    assert_eq!(
        app.get("/whoami", Some(&cookie)).await.body,
        r#"Some("user-42")"#,
        "the next request is signed in"
    );
}

async fn unbinding_takes_the_session_out_of_the_listing(store: Store) {
    let app = TestApp::conformance_with(settings(store), |routes| {
        routes
            .route("/unbind", axum::routing::post(unbind))
            .route("/whoami", axum::routing::get(whoami))
    })
    .await;
    let ann = user("ann");
    let cookie = app.login(&ann).await;
    let reply = app.post("/unbind", Some(&cookie), "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let cookie = reply.new_cookie();
    assert_eq!(app.get("/whoami", Some(&cookie)).await.body, "None");
    assert_eq!(
        app.get("/session", Some(&cookie)).await.data(),
        json!({"cart": [1]}),
        "the data stays, under a new id"
    );
    if indexes(store) {
        let listed = app
            .get(&format!("/users/{ann}/sessions"), None)
            .await
            .json();
        assert_eq!(listed["sessions"], json!([]), "{listed}");
    }
}

fn indexes(store: Store) -> bool {
    matches!(
        store,
        Store::Memory
            | Store::Redis
            | Store::RedisCluster
            | Store::RedisSentinel
            | Store::Postgres
            | Store::MySql
            | Store::Sqlite
    )
}

/// A user id no other test (sharing a server) uses.
fn user(name: &str) -> String {
    format!(
        "{name}-{}",
        typed_sessions::storage::SessionId::generate().as_str()
    )
}

async fn a_user_sees_and_revokes_all_their_sessions(store: Store) {
    if !indexes(store) {
        return;
    }
    let app = TestApp::conformance(settings(store)).await;
    let (ann, bob) = (user("ann"), user("bob"));
    let laptop = app.login(&ann).await;
    app.clock.advance(5);
    let phone = app.login(&ann).await;
    let bobs = app.login(&bob).await;

    let listed = app.get(&format!("/users/{ann}/sessions"), None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let sessions = listed.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[1]["last_seen"], session_tests::START + 5);
    assert!(
        !listed.body.contains(&laptop) && !listed.body.contains(&phone),
        "a listing never shows ids"
    );

    let revoked = app
        .send(Method::POST, &format!("/users/{ann}/revoke"), None, None)
        .await;
    assert_eq!(revoked.json(), json!({"revoked": 2}));
    for cookie in [&laptop, &phone] {
        let reply = app.get("/session", Some(cookie)).await;
        assert_eq!(reply.json()["new"], true, "logged out everywhere");
    }
    assert_eq!(
        app.get("/session", Some(&bobs)).await.data(),
        json!({"cart": [1]}),
        "another user's session stays"
    );
    let listed = app.get(&format!("/users/{ann}/sessions"), None).await;
    assert_eq!(listed.json(), json!({"sessions": []}));
}

async fn one_session_is_revoked_by_its_handle_by_its_own_user_only(store: Store) {
    if !indexes(store) {
        return;
    }
    let app = TestApp::conformance(settings(store)).await;
    let (ann, bob) = (user("ann"), user("bob"));
    let mut devices = Vec::new();
    for device in ["laptop", "phone"] {
        let cookie = app.session_with(r#"{"cart": [1]}"#).await;
        let body = json!({ "user": ann, "meta": {"device": device} }).to_string();
        devices.push(
            app.post("/session/bind", Some(&cookie), &body)
                .await
                .new_cookie(),
        );
        app.clock.advance(1);
    }
    app.login(&bob).await;
    let listed = app
        .get(&format!("/users/{ann}/sessions"), None)
        .await
        .json();
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions[0]["meta"], json!({"device": "laptop"}), "{listed}");
    assert_eq!(sessions[1]["meta"], json!({"device": "phone"}));
    let phone = sessions[1]["handle"].as_str().unwrap();

    // Bob cannot end Ann's phone with its handle.
    let reply = app
        .send(
            Method::POST,
            &format!("/users/{bob}/sessions/{phone}/revoke"),
            None,
            None,
        )
        .await;
    assert_eq!(reply.json(), json!({"revoked": 0}));
    let reply = app
        .send(
            Method::POST,
            &format!("/users/{ann}/sessions/{phone}/revoke"),
            None,
            None,
        )
        .await;
    assert_eq!(reply.json(), json!({"revoked": 1}));
    assert_eq!(
        app.get("/session", Some(&devices[1])).await.json()["new"],
        true
    );
    assert_eq!(
        app.get("/session", Some(&devices[0])).await.json()["new"],
        false
    );
    let listed = app
        .get(&format!("/users/{ann}/sessions"), None)
        .await
        .json();
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 1);
}

async fn binding_a_user_renews_the_session(store: Store) {
    let app = TestApp::conformance(settings(store)).await;
    let before = app.session_with(r#"{"cart": [1]}"#).await;
    let reply = app
        .post("/session/bind", Some(&before), r#"{"user": "ann"}"#)
        .await;
    let after = reply.new_cookie();
    assert_ne!(before, after, "a new cookie: binding is a privilege change");
    assert_eq!(
        app.get("/session", Some(&after)).await.data(),
        json!({"cart": [1]})
    );
    if is_server_side(store) {
        let reply = app.get("/session", Some(&before)).await;
        assert_eq!(reply.json()["new"], true, "the old id no longer works");
    }
}

async fn ended_sessions_are_not_listed(store: Store) {
    if !indexes(store) {
        return;
    }
    let mut settings = settings(store);
    settings.max_age = Some(60);
    let app = TestApp::conformance(settings).await;
    let ann = user("ann");
    app.login(&ann).await;
    app.clock.advance(61);
    let listed = app.get(&format!("/users/{ann}/sessions"), None).await;
    assert_eq!(
        listed.json(),
        json!({"sessions": []}),
        "idle past its max age: the layer's clock decides"
    );
}

async fn storages_that_cannot_index_say_so(store: Store) {
    if indexes(store) {
        return;
    }
    // Cookie storages without a revocation state; Memcached can revoke
    // (see `sessions_no_store_indexes_are_revoked_by_a_count`) but not
    // list.
    let app = TestApp::conformance(settings(store)).await;
    app.login("ann").await;
    let listed = app.get("/users/ann/sessions", None).await;
    assert_eq!(listed.status, 501, "{}", listed.body);
    assert!(listed.json()["error"].as_str().unwrap().contains("listing"));
    let revoked = app
        .send(Method::POST, "/users/ann/revoke", None, None)
        .await;
    if matches!(
        store,
        Store::Memcached | Store::AiohttpRedis | Store::AiohttpMemcached
    ) {
        assert_eq!(revoked.json(), json!({"revoked": null}));
    } else {
        assert_eq!(revoked.status, 501);
        assert!(
            revoked.body.contains("with_revocations"),
            "says what is missing: {}",
            revoked.body
        );
    }
}
