//! Code shared by the runnable examples: the conformance app
//! (`examples/CONFORMANCE.md`), which the integration tests also drive, the
//! header-token API, and the pages of the visits and typed-shop examples,
//! which the browser test drives.

pub mod api;
pub mod conformance;
pub mod page;
pub mod shop;
pub mod visits;
