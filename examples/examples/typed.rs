//! A small shop with typed sessions: a signed-in user and a cart, each a
//! `#[derive(Session)]` struct over the same session.
//!
//! ```text
//! cargo run --example typed
//! curl -si -X POST localhost:8081/login -d 'ann'              # note the cookie
//! curl -s  -X POST localhost:8081/cart/42 -H 'cookie: __Host-session=…'
//! curl -s  localhost:8081/ -H 'cookie: __Host-session=…'
//! curl -si -X POST localhost:8081/logout -H 'cookie: __Host-session=…'
//! ```
//!
//! Login calls `renew`, so a session id planted before login is worthless
//! after it. Sessions live in memory; `TYPED_ADDR` changes the address.

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use typed_sessions::{MemoryStorage, Session, SessionLayer, TypedSession};

/// Who is signed in. Idle sessions of signed-in users end after 30 minutes.
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

async fn home(user: TypedSession<User>, cart: TypedSession<Cart>) -> String {
    let who = user.name().unwrap_or_else(|| "guest".to_owned());
    format!(
        "Hello {who}: {} item(s) in your cart {:?}\n",
        cart.items().len(),
        cart.items()
    )
}

async fn login(user: TypedSession<User>, name: String) -> Result<String, StatusCode> {
    let name = name.trim();
    if name.is_empty() {
        return Err(StatusCode::BAD_REQUEST);
    }
    // A new id on every change of privilege; the cart comes along.
    user.renew();
    user.set_name(Some(name.to_owned()));
    *user.logins_mut() += 1;
    Ok(format!("Welcome {name} (login number {})\n", user.logins()))
}

async fn add_to_cart(cart: TypedSession<Cart>, Path(item): Path<u32>) -> String {
    cart.items_mut().push(item);
    format!("{} item(s) in your cart\n", cart.items().len())
}

async fn logout(session: Session) -> &'static str {
    session.invalidate();
    "Bye\n"
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let app = Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/cart/{item}", post(add_to_cart))
        .route("/logout", post(logout))
        .layer(SessionLayer::new(MemoryStorage::new()));
    let addr = std::env::var("TYPED_ADDR").unwrap_or_else(|_| "127.0.0.1:8081".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|error| panic!("cannot bind {addr}: {error}"));
    println!(
        "listening on http://{}",
        listener.local_addr().expect("bound")
    );
    axum::serve(listener, app).await.expect("server runs");
}
