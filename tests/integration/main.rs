//! The crate's one integration-test binary; each topic is a module.

mod contract_selftest;
mod support;
