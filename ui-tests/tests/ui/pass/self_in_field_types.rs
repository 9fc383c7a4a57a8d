//! Field types may name the struct as `Self`, as Rust allows.

use typed_sessions::{Session, TypedSession};

#[derive(Session, serde::Serialize, serde::Deserialize)]
pub struct Node {
    pub next: Option<Box<Self>>,
    #[session(default)]
    pub children: Vec<Self>,
    pub value: u64,
}

#[derive(Session)]
struct Trail {
    last: Option<Node>,
    #[session(default)]
    path: Vec<Box<Node>>,
}

fn use_it(node: TypedSession<Node>, trail: TypedSession<Trail>) {
    let _: Option<Box<Node>> = node.next();
    node.set_children(vec![]);
    let _: Vec<Box<Node>> = trail.path();
    let _ = trail.last();
}

fn main() {
    let _ = use_it;
}
