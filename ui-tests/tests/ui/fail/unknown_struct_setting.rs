use typed_sessions::Session;

#[derive(Session)]
#[session(maxage = 60)]
struct Visit {
    count: u64,
}

fn main() {}
