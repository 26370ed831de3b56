//! The escape suite: attacks on omac's sandbox. Each one runs inside `omac run` of a bundle
//! made by `omac bundle create` and must be refused, and runs once unconfined (directly, or
//! in a user namespace where the test user holds the capabilities the sandbox drops) where
//! it must succeed, which proves the probe would notice a breach. See `probe.c`.
//!
//! The suite runs as root and as an unprivileged user (scripts/test.sh).

mod harness;

mod files;
mod kernel;
mod network;
mod process;
