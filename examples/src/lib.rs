//! Code shared by the runnable examples: the conformance app
//! (`../shared/conformance.md`), which the integration tests also drive.

pub mod conformance;
