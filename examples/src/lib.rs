//! Code shared by the runnable examples: the conformance app
//! (`../shared/conformance.md`), which the integration tests also drive, and
//! the visits handler.

pub mod conformance;
pub mod visits;
