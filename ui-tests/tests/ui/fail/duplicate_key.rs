use typed_sessions::Session;

#[derive(Session)]
struct Visit {
    count: u64,
    #[session(rename = "count")]
    total: u64,
}

fn main() {}
