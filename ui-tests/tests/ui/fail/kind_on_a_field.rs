//! `kind` belongs on the struct.

use typed_sessions::Session;

#[derive(Session)]
struct Operator {
    #[session(kind = Admin)]
    name: Option<String>,
}

fn main() {}
