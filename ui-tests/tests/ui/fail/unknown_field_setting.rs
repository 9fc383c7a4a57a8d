use typed_sessions::Session;

#[derive(Session)]
struct Visit {
    #[session(key = "n")]
    count: u64,
}

fn main() {}
