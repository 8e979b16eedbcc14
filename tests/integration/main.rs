//! The crate's single integration-test binary; each topic is a module.

mod fake_kube;
