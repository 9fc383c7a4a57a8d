use typed_sessions::Session;

#[derive(Session)]
#[session(default)]
struct Visit {
    #[session(max_age = 60)]
    count: u64,
}

fn main() {}
