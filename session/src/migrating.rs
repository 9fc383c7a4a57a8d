// MIGRATING.md's Rust blocks, compiled as doc tests, as the README's are.
#![doc = include_str!("../../MIGRATING.md")]
