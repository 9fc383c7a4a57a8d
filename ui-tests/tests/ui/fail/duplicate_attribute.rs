use typed_sessions::Session;

#[derive(Session)]
#[session(max_age = 60)]
#[session(max_age = 120)]
struct Visit {
    #[session(rename = "a")]
    #[session(rename = "b")]
    count: u64,
}

fn main() {}
