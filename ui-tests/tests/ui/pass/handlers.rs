//! Several typed structs and the dynamic session in one handler, as axum
//! extractors behind the layer.

use axum::Router;
use axum::routing::post;
use typed_sessions::{MemoryStorage, Session, SessionLayer, TypedSession};

#[derive(Session)]
struct Profile {
    user: Option<String>,
    #[session(default)]
    visits: u64,
}

#[derive(Session)]
#[session(max_age = 600)]
struct Cart {
    #[session(default)]
    items: Vec<u32>,
}

async fn checkout(
    profile: TypedSession<Profile>,
    cart: TypedSession<Cart>,
    session: Session,
) -> String {
    *profile.visits_mut() += 1;
    cart.items_mut().push(7);
    if profile.user().is_none() {
        cart.renew();
    }
    format!("{} keys", session.len())
}

fn main() {
    let _app: Router = Router::new()
        .route("/checkout", post(checkout))
        .layer(SessionLayer::new(MemoryStorage::new()));
}
