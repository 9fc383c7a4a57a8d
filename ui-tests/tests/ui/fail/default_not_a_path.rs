use typed_sessions::Session;

#[derive(Session)]
struct Visit {
    #[session(default = 5)]
    count: u64,
}

fn main() {}
