//! The typed shop behind `examples/typed`: a signed-in user and a cart, each
//! a `#[derive(Session)]` struct over the same session, on plain HTML forms
//! (no JavaScript). Every form posts to a route that changes the session,
//! leaves a flash message and redirects back to the shop (`303 See Other`),
//! so a reload never posts twice.

use axum::Router;
use axum::extract::{Form, Path};
use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use serde::Deserialize;
use typed_sessions::{Flash, Session, SessionLayer, TypedSession};

use crate::page::{escape, page};

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

/// The shop at `/`, its sessions kept by `layer`.
pub fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/cart/{item}", post(add_to_cart))
        .route("/logout", post(logout))
        .route("/signed-out", get(signed_out))
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
                 <button id=\"sign-out\">Sign out</button></form>\n",
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
    Form(Login { name }): Form<Login>,
) -> Redirect {
    let name = name.trim();
    if name.is_empty() {
        flash.push("Type a name to sign in.".to_owned());
        return Redirect::to("/");
    }
    // A new id on every change of privilege; the cart comes along.
    user.renew();
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

fn product_name(item: u32) -> String {
    match PRODUCTS.iter().find(|(number, _)| *number == item) {
        Some((_, name)) => (*name).to_owned(),
        None => format!("item {item}"),
    }
}
