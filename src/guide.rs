//! The guide (`docs/guide.md`): every example in it compiles and runs as a doctest.
#![doc = include_str!("../docs/guide.md")]
