use typed_sessions::Session;

#[derive(Session)]
struct Flags {
    #[session(default)]
    dark: bool,
    #[session(default)]
    set_dark: bool,
}

fn main() {}
