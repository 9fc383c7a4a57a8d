use typed_sessions::Session;

#[derive(Session)]
#[session(max_age = "soon")]
struct Visit {
    count: u64,
}

#[derive(Session)]
#[session(max_age = 1.5)]
struct Other {
    count: u64,
}

fn main() {}
