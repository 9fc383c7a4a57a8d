use typed_sessions::Session;

#[derive(Session)]
#[session(max_age = 0)]
struct Visit {
    #[session(rename = "")]
    count: u64,
    #[session(colour = "blue")]
    seen: bool,
    #[session(rename = "seen")]
    again: bool,
}

fn main() {}
