use typed_sessions::Session;

struct Cart {
    items: Vec<u32>,
}

#[derive(Session)]
struct Shop {
    #[session(default)]
    visits: u64,
    cart: Option<Cart>,
}

fn main() {}
