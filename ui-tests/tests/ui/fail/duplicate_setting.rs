use typed_sessions::Session;

#[derive(Session)]
struct Visit {
    #[session(default, default)]
    count: u64,
}

fn main() {}
