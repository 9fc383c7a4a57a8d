use typed_sessions::Session;

#[derive(Session)]
enum Visit {
    First,
    Again { count: u64 },
}

fn main() {}
