//! aiohttp_session's first example, in axum: the page counts your visits and
//! shows when you last came, remembered in an encrypted cookie.
//!
//! ```text
//! SESSION_SECRET=$(head -c32 /dev/urandom | base64) cargo run --release --example visits
//! ```
//!
//! Then open <http://localhost:8080/> in a browser and reload. Without
//! `SESSION_SECRET` a key is generated at start, so sessions do not survive
//! a restart. The cookie is `Secure`, which browsers accept on
//! `http://localhost`; serve anything else over HTTPS. It is a
//! browser-session cookie, gone when the browser closes; `SESSION_MAX_AGE`
//! (seconds) makes it persistent. `VISITS_ADDR` changes the address.

use std::process::ExitCode;
use std::time::Duration;

use session_examples::visits;
use typed_sessions::{EncryptedCookieStorage, EncryptionKey, SessionLayer};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let key = match std::env::var("SESSION_SECRET") {
        Ok(text) => match EncryptionKey::from_base64(&text) {
            Ok(key) => key,
            Err(error) => {
                eprintln!("visits: SESSION_SECRET: {error}");
                return ExitCode::FAILURE;
            }
        },
        Err(_) => {
            tracing::warn!(
                "SESSION_SECRET is not set: using a random key, so sessions end when the server stops"
            );
            EncryptionKey::generate()
        }
    };
    let max_age = match std::env::var("SESSION_MAX_AGE") {
        Ok(text) => match text.parse::<u64>() {
            Ok(seconds) => Some(Duration::from_secs(seconds)),
            Err(error) => {
                eprintln!("visits: SESSION_MAX_AGE {text:?} is not a number of seconds: {error}");
                return ExitCode::FAILURE;
            }
        },
        Err(_) => None,
    };
    let layer = match SessionLayer::builder(EncryptedCookieStorage::new(key))
        .with_max_age(max_age)
        .build()
    {
        Ok(layer) => layer,
        Err(error) => {
            eprintln!("visits: {error}");
            return ExitCode::FAILURE;
        }
    };
    let app = visits::app(layer);

    let addr = std::env::var("VISITS_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("visits: cannot bind {addr}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    println!(
        "listening on http://{addr} (open http://localhost:{}/)",
        addr.port()
    );
    if let Err(error) = axum::serve(listener, app).await {
        eprintln!("visits: server failed: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
