use typed_sessions::Session;

#[derive(Session)]
#[session()]
struct Visit {
    count: u64,
}

fn main() {}
