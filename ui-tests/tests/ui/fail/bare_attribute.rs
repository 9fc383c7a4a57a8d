use typed_sessions::Session;

#[derive(Session)]
struct Visit {
    #[session]
    count: u64,
}

fn main() {}
