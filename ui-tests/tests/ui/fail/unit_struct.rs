use typed_sessions::Session;

#[derive(Session)]
struct Visit;

fn main() {}
