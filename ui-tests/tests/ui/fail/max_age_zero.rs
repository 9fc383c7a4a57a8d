use typed_sessions::Session;

#[derive(Session)]
#[session(max_age = 0)]
struct Visit {
    count: u64,
}

fn main() {}
