use typed_sessions::Session;

#[derive(Session)]
struct Visit<T> {
    value: Option<T>,
}

fn main() {}
