//! The crate's single integration-test binary; each topic is a module.

mod support;

mod cf_sim;
mod fake_kube;
mod linstor_sim;
