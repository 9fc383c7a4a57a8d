//! A typed struct of the admin kind cannot be laid over the main session.

use typed_sessions::{Session, SessionKind, TypedSession};

struct Admin;

impl SessionKind for Admin {
    const NAME: &'static str = "admin";
}

#[derive(Session)]
#[session(kind = Admin)]
struct Operator {
    name: Option<String>,
}

fn view(main: Session) -> TypedSession<Operator> {
    TypedSession::from_session(main)
}

fn main() {}
