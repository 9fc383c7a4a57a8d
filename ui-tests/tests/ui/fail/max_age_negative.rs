use typed_sessions::Session;

#[derive(Session)]
#[session(max_age = -60)]
struct Visit {
    count: u64,
}

fn main() {}
