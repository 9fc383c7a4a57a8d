//! The layer: its builder, the tower service, the per-request slot the
//! extractors load through, the save after the handler and the cookie it
//! writes.
//!
//! A request's path through it is one-way: [`service`] puts a lazy
//! [`slot`] into the request; an extractor loads the session through it;
//! after the handler, [`commit`] saves what changed and [`cookies`] writes
//! the `Set-Cookie`. [`builder`] makes the [`config`] they all read.

pub(crate) mod builder;
pub(crate) mod commit;
pub(crate) mod config;
pub(crate) mod cookies;
pub(crate) mod service;
pub(crate) mod slot;

pub use builder::SessionLayerBuilder;
pub use config::SameSite;
pub use service::{ResponseFuture, SessionLayer, SessionService};
