use typed_sessions::Session;

#[derive(Session)]
struct Login {
    session: Option<String>,
    #[session(default)]
    renew: bool,
}

fn main() {}
