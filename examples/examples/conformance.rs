//! The conformance app of `examples/CONFORMANCE.md`: every session
//! operation over JSON, on the storage named by `SESSION_STORE`.
//!
//! ```text
//! SESSION_STORE=memory cargo run --release --example conformance
//! ```

use std::process::ExitCode;

use session_examples::conformance::{Settings, app};
use typed_sessions::clock::SystemClock;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,redis=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = match Settings::from_env() {
        Ok(settings) => settings.connect_revocations().await,
        Err(message) => Err(message),
    };
    let settings = match settings {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("conformance: {message}");
            return ExitCode::FAILURE;
        }
    };
    let layers = match settings.storage().await {
        Ok(storage) => settings
            .layer_with(storage.clone(), SystemClock)
            .and_then(|layer| Ok((layer, settings.admin_layer_with(storage, SystemClock)?))),
        Err(message) => Err(message),
    };
    let (layer, admin) = match layers {
        Ok(layers) => layers,
        Err(message) => {
            eprintln!("conformance: {message}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(&settings.addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("conformance: cannot bind {}: {error}", settings.addr);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    println!("listening on http://{addr}");
    if let Err(error) = axum::serve(listener, app(layer, admin)).await {
        eprintln!("conformance: server failed: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
