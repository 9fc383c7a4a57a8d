//! The storages that keep the whole session in the cookie: sealed with
//! AES-256-GCM, or as plain JSON for tests.

mod encrypted;
mod envelope;
mod opened;
mod simple;

pub use encrypted::{EncryptedCookieStorage, EncryptionKey, KeyError};
pub use simple::SimpleCookieStorage;
