use typed_sessions::Session;

#[derive(Session)]
struct Visit(u64, Option<f64>);

fn main() {}
