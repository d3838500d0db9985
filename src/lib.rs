//! benchlink: a TCP console for lab PCs that embedded devices talk to.
//!
//! The engine (listener, sessions, file sink, stats) takes [`engine::Command`]s and
//! emits [`engine::Event`]s; front ends (the headless printer, later the TUI) only
//! consume that stream. Protocol codecs under [`protocol`] are pure: bytes in,
//! messages out, no I/O.
#![deny(clippy::unwrap_used)]

pub mod cli;
pub mod config;
pub mod console;
pub mod device;
pub mod engine;
pub mod headless;
pub mod link_spec;
pub mod metrics;
pub mod mqtt;
pub mod protocol;
pub mod text;
pub mod tui;
pub mod watch;
