//! `#[derive(Session)]`: typed, change-tracked access to keys of the session
//! map. Use it through the `typed-sessions` crate, which re-exports it and
//! documents it.
//!
//! The derive reads like the derives it learns from: `ast.rs` turns the
//! input into this crate's model (with `attr.rs` parsing `#[session(...)]`),
//! `valid.rs` finds every mistake before any code is generated, and
//! `expand.rs` writes the code. (The modules are private, so these are
//! file names, not links: this page is what a user of the macro sees.)

#![forbid(unsafe_code)]

mod ast;
mod attr;
mod expand;
mod valid;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `typed_sessions::SessionData` and the typed accessors of
/// `TypedSession<Self>`. See the `typed-sessions` crate for the attributes.
#[proc_macro_derive(Session, attributes(session))]
pub fn derive_session(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
