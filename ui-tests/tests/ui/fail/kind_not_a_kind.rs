//! `kind` names a type that is not a session kind.

use typed_sessions::Session;

struct Admin;

#[derive(Session)]
#[session(kind = Admin)]
struct Operator {
    name: Option<String>,
}

fn main() {}
