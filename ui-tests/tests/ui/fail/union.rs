use typed_sessions::Session;

#[derive(Session)]
union Visit {
    count: u64,
    seconds: f64,
}

fn main() {}
