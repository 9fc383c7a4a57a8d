//! Two kinds of session in one app: each typed struct names its kind, and
//! one handler extracts both kinds' sessions.

use axum::Router;
use axum::routing::post;
use typed_sessions::{Flash, MemoryStorage, Session, SessionKind, SessionLayer, TypedSession};

struct Admin;

impl SessionKind for Admin {
    const NAME: &'static str = "admin";
}

#[derive(Session)]
struct Shopper {
    user: Option<String>,
}

#[derive(Session)]
#[session(kind = Admin, max_age = "15m")]
struct Operator {
    name: Option<String>,
}

async fn handler(
    shopper: TypedSession<Shopper>,
    operator: TypedSession<Operator>,
    admin: Session<Admin>,
    notes: Flash<String, Admin>,
) -> String {
    let admin_view: &Session<Admin> = operator.session();
    notes.push(format!("{:?} looked at {:?}", operator.name(), shopper.user()));
    format!("{} and {} keys", admin.len(), admin_view.len())
}

fn main() {
    let admin_layer: SessionLayer<Admin> = SessionLayer::builder(MemoryStorage::new())
        .with_kind::<Admin>()
        .build()
        .expect("valid configuration");
    let _app: Router = Router::new()
        .route("/", post(handler))
        .layer(admin_layer)
        .layer(SessionLayer::new(MemoryStorage::new()));
}
