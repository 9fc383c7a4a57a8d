//! Code shared by the runnable examples: the conformance app
//! (`examples/CONFORMANCE.md`), which the integration tests also drive, and
//! the visits handler.

pub mod conformance;
pub mod visits;
