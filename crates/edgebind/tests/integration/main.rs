//! The crate's single integration-test binary; each topic is a module.

mod support;

mod access;
mod attacks;
mod cf_sim;
mod cli;
mod cloudflare;
mod cloudflare_rotation;
mod conformance;
mod contract_selftest;
mod fake_kube;
mod gateway;
mod identity_examples;
mod leader;
mod linstor_client;
mod linstor_fidelity;
mod linstor_sim;
mod linstor_sim_contract;
mod linstor_tls;
mod node_faults;
mod operator;
mod plan_parity;
mod readme;
mod real_apiserver;
mod real_cluster;
mod refusal_reports;
