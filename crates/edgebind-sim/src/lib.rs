//! Built-in simulators of the systems edgebind talks to. They back `edgebind plan`, the
//! `edgebind simulate ...` subcommands and the test suite, and reproduce the real servers' quirks.

pub mod cloudflare;
pub mod kube;
pub mod linstor;
