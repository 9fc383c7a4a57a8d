//! The Rust side of a move from aiohttp_session (`MIGRATING.md`): routes
//! ported to axum, served beside the Python service on the same sessions.
//!
//! ```text
//! AIOHTTP_STORE=redis REDIS_URL=redis://127.0.0.1:6379/0 SESSION_MAX_AGE=3600 \
//!     cargo run --release --example aiohttp-bridge
//! ```
//!
//! `/` is aiohttp_session's first example (`last_visit`, the same key the
//! Python README's handler writes), `/session` shows the whole session. A
//! user sent back and forth between the two services keeps one session.
//!
//! Settings, each the Python side's own:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `AIOHTTP_STORE` | `encrypted` (Fernet), `nacl`, `redis` or `memcached` | `encrypted` |
//! | `SESSION_SECRET` | cookies: base64 of the 32 `secret_key` bytes, or the Fernet key | required for cookies |
//! | `REDIS_URL` / `MEMCACHED_URL` | the server of the Python storage | `redis://127.0.0.1:6379/0` / `127.0.0.1:11211` |
//! | `SESSION_COOKIE_NAME` | the storage's `cookie_name` | `AIOHTTP_SESSION` |
//! | `SESSION_MAX_AGE` | the storage's `max_age`, seconds | unset |
//! | `SESSION_COOKIE_SECURE` | `true` or `false` (`false` only for plain-HTTP development, as aiohttp's default) | `true` |
//! | `BRIDGE_MODE` | `share` (read and write aiohttp_session's format) or `upgrade` (read it, write the native one: once Python is gone) | `share` |
//! | `NATIVE_SECRET` | upgrade with cookies: the new native key (base64, 32 bytes) | required then |
//! | `BRIDGE_ADDR` | address to bind | `127.0.0.1:8081` |

use std::env;
use std::process::ExitCode;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use session_examples::visits::last_visit;
use typed_sessions::{
    EncryptedCookieStorage, EncryptionKey, MemcachedStorage, RedisStorage, Session, SessionLayer,
    aiohttp, storage::AnyStorage,
};

fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|value| !value.is_empty())
}

fn key(name: &str) -> Result<EncryptionKey, String> {
    let text = var(name).ok_or_else(|| format!("{name} is required for this store"))?;
    EncryptionKey::from_base64(&text).map_err(|error| format!("{name}: {error}"))
}

/// The storage the settings name: aiohttp_session's, or (upgrade) the
/// native one reading it too.
async fn storage() -> Result<AnyStorage, String> {
    let store = var("AIOHTTP_STORE").unwrap_or_else(|| "encrypted".to_owned());
    let upgrade = match var("BRIDGE_MODE").as_deref() {
        None | Some("share") => false,
        Some("upgrade") => true,
        Some(other) => {
            return Err(format!(
                "BRIDGE_MODE must be share or upgrade, got {other:?}"
            ));
        }
    };
    let redis_url = var("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379/0".to_owned());
    let memcached = var("MEMCACHED_URL").unwrap_or_else(|| "127.0.0.1:11211".to_owned());
    let failed = |what: &str, error: typed_sessions::StorageError| format!("{what}: {error}");
    Ok(match (store.as_str(), upgrade) {
        ("encrypted", false) => {
            AnyStorage::new(aiohttp::FernetCookieStorage::new(key("SESSION_SECRET")?))
        }
        ("encrypted", true) => AnyStorage::new(aiohttp::Upgrade::new(
            EncryptedCookieStorage::new(key("NATIVE_SECRET")?),
            aiohttp::FernetCookieStorage::new(key("SESSION_SECRET")?),
        )),
        ("nacl", false) => AnyStorage::new(aiohttp::NaClCookieStorage::new(key("SESSION_SECRET")?)),
        ("nacl", true) => AnyStorage::new(aiohttp::Upgrade::new(
            EncryptedCookieStorage::new(key("NATIVE_SECRET")?),
            aiohttp::NaClCookieStorage::new(key("SESSION_SECRET")?),
        )),
        ("redis", upgrade) => {
            let native = RedisStorage::connect(&redis_url)
                .await
                .map_err(|error| failed("REDIS_URL", error))?;
            let old = aiohttp::AiohttpRedisStorage::from_connection(native.connection().clone());
            if upgrade {
                AnyStorage::new(aiohttp::Upgrade::new(native, old))
            } else {
                AnyStorage::new(old)
            }
        }
        ("memcached", upgrade) => {
            let old = aiohttp::AiohttpMemcachedStorage::connect(&memcached)
                .await
                .map_err(|error| failed("MEMCACHED_URL", error))?;
            if upgrade {
                let native = MemcachedStorage::connect([memcached.as_str()])
                    .await
                    .map_err(|error| failed("MEMCACHED_URL", error))?;
                AnyStorage::new(aiohttp::Upgrade::new(native, old))
            } else {
                AnyStorage::new(old)
            }
        }
        (other, _) => {
            return Err(format!(
                "AIOHTTP_STORE must be encrypted, nacl, redis or memcached, got {other:?}"
            ));
        }
    })
}

async fn layer() -> Result<SessionLayer, String> {
    let max_age = var("SESSION_MAX_AGE")
        .map(|text| {
            text.parse::<u64>()
                .map_err(|_| format!("SESSION_MAX_AGE must be whole seconds, got {text:?}"))
        })
        .transpose()?;
    let secure = match var("SESSION_COOKIE_SECURE").as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(format!(
                "SESSION_COOKIE_SECURE must be true or false, got {other:?}"
            ));
        }
    };
    SessionLayer::builder(storage().await?)
        .with_cookie_name(
            var("SESSION_COOKIE_NAME").unwrap_or_else(|| aiohttp::DEFAULT_COOKIE_NAME.to_owned()),
        )
        .with_max_age(max_age.map(Duration::from_secs))
        .with_secure(secure)
        .build()
        .map_err(|error| format!("invalid session configuration: {error}"))
}

async fn show(session: Session) -> Json<serde_json::Map<String, serde_json::Value>> {
    Json(session.to_map())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,redis=error")),
        )
        .init();
    let layer = match layer().await {
        Ok(layer) => layer,
        Err(message) => {
            eprintln!("aiohttp-bridge: {message}");
            return ExitCode::FAILURE;
        }
    };
    let app = Router::new()
        .route("/", get(last_visit))
        .route("/session", get(show))
        .layer(layer);
    let addr = var("BRIDGE_ADDR").unwrap_or_else(|| "127.0.0.1:8081".to_owned());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("aiohttp-bridge: cannot bind {addr}: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on http://{addr}");
    if let Err(error) = axum::serve(listener, app).await {
        eprintln!("aiohttp-bridge: server failed: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
