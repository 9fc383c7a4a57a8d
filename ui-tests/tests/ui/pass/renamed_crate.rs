//! Generated code finds the runtime crate under the name the user gave it.

extern crate typed_sessions as sessions;

use sessions::TypedSession;

#[derive(sessions::Session)]
#[session(crate = "sessions")]
struct Visit {
    #[session(default)]
    count: u64,
}

fn bump(visit: &TypedSession<Visit>) {
    *visit.count_mut() += 1;
}

fn main() {
    let _ = bump;
}
