// The README's Rust blocks, compiled as doc tests so that what a newcomer
// copies from it builds. Only with the `redis` and `memcached` features, as
// `.ci/run` runs the tests (`--all-features`): the storage snippets need them,
// so a `cargo test` without features skips the README instead of failing.
#![doc = include_str!("../../README.md")]
