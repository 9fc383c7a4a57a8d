//! Code shared by the runnable examples: the conformance app
//! (`examples/CONFORMANCE.md`), which the integration tests also drive, the
//! header-token API and the visits handler.

pub mod api;
pub mod conformance;
pub mod visits;
