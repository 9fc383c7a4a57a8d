use typed_sessions::Session;

#[derive(Session)]
struct Visit {
    #[session(rename = "")]
    count: u64,
}

fn main() {}
