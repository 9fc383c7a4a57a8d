//! The typed shop behind `examples/typed`: a signed-in user and a cart, each
//! a `#[derive(Session)]` struct over the same session, on plain HTML forms
//! (no JavaScript). Every form posts to a route that changes the session,
//! leaves a flash message and redirects back to the shop (`303 See Other`),
//! so a reload never posts twice.
//!
//! A signed-in user sees their active sessions at `/sessions` and can sign
//! out one device or every one; the back office at `/admin` is a second,
//! independent session kind with a cookie of its own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Form, Path};
use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use serde::Deserialize;
use typed_sessions::{
    Flash, MemoryStorage, Session, SessionKind, SessionLayer, TypedSession, UserSessions,
};

use crate::page::{escape, page, time_ago};

/// The back office's session kind: its own layer and cookie
/// (`__Host-session_admin`), which no shop handler can read.
pub struct BackOffice;

impl SessionKind for BackOffice {
    const NAME: &'static str = "admin";
}

/// Who runs the back office, in the back office's own session.
#[derive(Session)]
#[session(kind = BackOffice, max_age = "15m")]
struct Operator {
    #[session(rename = "operator")]
    name: Option<String>,
}

/// Who is signed in. A signed-in session lasts 30 minutes after its last
/// change, also across a browser restart (the cookie gets a `Max-Age`).
#[derive(Session)]
#[session(max_age = "30m")]
struct User {
    #[session(rename = "user")]
    name: Option<String>,
    #[session(default)]
    logins: u32,
}

/// What is in the cart, kept for guests too.
#[derive(Session)]
struct Cart {
    #[session(rename = "cart", default)]
    items: Vec<u32>,
}

/// What the shop sells: an item number and its name.
const PRODUCTS: [(u32, &str); 3] = [(7, "Teapot"), (42, "Towel"), (99, "Red balloon")];

/// The shop at `/`, its sessions kept by `layer`, the back office's in a
/// memory store of its own.
pub fn app(layer: SessionLayer) -> Router {
    let back_office = SessionLayer::builder(MemoryStorage::new())
        .with_kind::<BackOffice>()
        .build()
        .expect("valid back-office configuration");
    app_with_back_office(layer, back_office)
}

/// The shop with the back office's sessions kept by `back_office`.
pub fn app_with_back_office(layer: SessionLayer, back_office: SessionLayer<BackOffice>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/cart/{item}", post(add_to_cart))
        .route("/logout", post(logout))
        .route("/signed-out", get(signed_out))
        .route("/sessions", get(sessions))
        .route("/sessions/revoke", post(revoke_all))
        .route("/sessions/{handle}/revoke", post(revoke_one))
        .route("/admin", get(admin))
        .route("/admin/login", post(admin_login))
        .layer(back_office)
        .layer(layer)
}

async fn home(
    user: TypedSession<User>,
    cart: TypedSession<Cart>,
    flash: Flash<String>,
) -> Html<String> {
    let mut body = String::new();
    for message in flash.take() {
        body += &format!("<p class=\"flash\">{}</p>\n", escape(&message));
    }
    match user.name() {
        Some(name) => {
            body += &format!(
                "<p id=\"greeting\">Hello {}.</p>\n\
                 <form method=\"post\" action=\"/logout\">\
                 <button id=\"sign-out\">Sign out</button></form>\n\
                 <p><a id=\"your-sessions\" href=\"/sessions\">Your sessions</a></p>\n",
                escape(&name)
            );
        }
        None => {
            body += "<p id=\"greeting\">Hello guest.</p>\n\
                     <form method=\"post\" action=\"/login\"><label>Name \
                     <input id=\"name\" name=\"name\" required autocomplete=\"username\"></label> \
                     <button id=\"sign-in\">Sign in</button></form>\n";
        }
    }
    body += "<h2>Products</h2>\n<ul>\n";
    for (item, product) in PRODUCTS {
        body += &format!(
            "<li><form method=\"post\" action=\"/cart/{item}\">{product} \
             <button id=\"add-{item}\">Add to cart</button></form></li>\n"
        );
    }
    let items = cart.items();
    body += &format!(
        "</ul>\n<h2>Your cart</h2>\n<p id=\"cart-count\">{} item(s)</p>\n<ul id=\"cart\">\n",
        items.len()
    );
    for item in items {
        body += &format!("<li>{}</li>\n", product_name(item));
    }
    body += "</ul>\n<p class=\"note\">A guest's cart lasts until the browser closes; \
             signing in keeps the session for 30 minutes after its last change.</p>\n";
    page("Typed shop", &body)
}

#[derive(Deserialize)]
struct Login {
    name: String,
}

async fn login(
    user: TypedSession<User>,
    flash: Flash<String>,
    headers: axum::http::HeaderMap,
    Form(Login { name }): Form<Login>,
) -> Redirect {
    let name = name.trim();
    if name.is_empty() {
        flash.push("Type a name to sign in.".to_owned());
        return Redirect::to("/");
    }
    // Bound to the user, so it shows among their sessions; binding also
    // renews the id (a change of privilege), and the cart comes along. A
    // real shop checks a password first.
    let device = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|agent| agent.to_str().ok())
        .unwrap_or("an unknown browser")
        .chars()
        .take(120)
        .collect::<String>();
    let _ = user.session().insert(Session::USER_META_KEY, device);
    user.session().bind_user(name);
    user.set_name(Some(name.to_owned()));
    *user.logins_mut() += 1;
    flash.push(format!(
        "Welcome {name} (sign-in number {}).",
        user.logins()
    ));
    Redirect::to("/")
}

async fn add_to_cart(
    cart: TypedSession<Cart>,
    flash: Flash<String>,
    Path(item): Path<u32>,
) -> Redirect {
    cart.items_mut().push(item);
    flash.push(format!("Added {} to your cart.", product_name(item)));
    Redirect::to("/")
}

/// Ends the session. No flash message here: one would start a new session
/// and so a new cookie, where signing out should leave none.
async fn logout(session: Session) -> Redirect {
    session.invalidate();
    Redirect::to("/signed-out")
}

async fn signed_out() -> Html<String> {
    page(
        "Signed out",
        "<p id=\"signed-out\">You are signed out: your session is gone and so is its \
         cookie.</p>\n<p><a id=\"back\" href=\"/\">Back to the shop</a></p>\n",
    )
}

fn unix(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// The signed-in user's active sessions, with a button to end each, or all.
async fn sessions(user: TypedSession<User>, sessions: UserSessions) -> Html<String> {
    let Some(name) = user.name() else {
        return page(
            "Your sessions",
            "<p>Sign in first.</p><p><a href=\"/\">Back</a></p>",
        );
    };
    let mut body = String::new();
    match sessions.of(&name).await {
        Ok(live) => {
            body += &format!(
                "<p id=\"session-count\">{} active session(s)</p>\n<ul>\n",
                live.len()
            );
            let now = SystemTime::now();
            for session in live {
                let device = session
                    .meta
                    .as_ref()
                    .and_then(|meta| meta.as_str())
                    .unwrap_or("a browser");
                body += &format!(
                    "<li>{}: signed in {}, last seen {}\
                     <form method=\"post\" action=\"/sessions/{}/revoke\">\
                     <button>Sign out that device</button></form></li>\n",
                    escape(device),
                    time_ago(unix(session.created), now),
                    time_ago(unix(session.last_seen), now),
                    escape(&session.handle),
                );
            }
            body += "</ul>\n<form method=\"post\" action=\"/sessions/revoke\">\
                     <button id=\"sign-out-everywhere\">Sign out everywhere</button></form>\n";
        }
        Err(error) => body += &format!("<p>Cannot list them: {}</p>\n", escape(&error.to_string())),
    }
    body += "<p><a href=\"/\">Back to the shop</a></p>\n";
    page("Your sessions", &body)
}

async fn revoke_one(
    user: TypedSession<User>,
    sessions: UserSessions,
    Path(handle): Path<String>,
) -> Redirect {
    if let Some(name) = user.name() {
        let _ = sessions.revoke_one(&name, &handle).await;
    }
    Redirect::to("/sessions")
}

/// Ends every session of the user, this one included ("a password
/// changed"): the next page is a guest's.
async fn revoke_all(user: TypedSession<User>, sessions: UserSessions) -> Redirect {
    if let Some(name) = user.name() {
        let _ = sessions.revoke(&name).await;
    }
    Redirect::to("/signed-out")
}

/// The back office: a session of its own kind, beside the shop's.
async fn admin(operator: TypedSession<Operator>, shop: Session) -> Html<String> {
    let body = match operator.name() {
        Some(name) => format!(
            "<p id=\"operator\">Back office: {} is on duty.</p>\n\
             <p class=\"note\">The shop session beside it has {} key(s); neither can read \
             the other.</p>\n",
            escape(&name),
            shop.len()
        ),
        None => "<form method=\"post\" action=\"/admin/login\"><label>Operator \
                 <input id=\"operator-name\" name=\"name\" required></label> \
                 <button id=\"operator-sign-in\">Sign in to the back office</button></form>\n"
            .to_owned(),
    };
    page("Back office", &body)
}

async fn admin_login(
    operator: TypedSession<Operator>,
    Form(Login { name }): Form<Login>,
) -> Redirect {
    operator.renew();
    operator.set_name(Some(name.trim().to_owned()));
    Redirect::to("/admin")
}

fn product_name(item: u32) -> String {
    match PRODUCTS.iter().find(|(number, _)| *number == item) {
        Some((_, name)) => (*name).to_owned(),
        None => format!("item {item}"),
    }
}
