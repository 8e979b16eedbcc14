//! Helpers shared by the integration tests. Not every test uses every helper.
#![allow(dead_code)]

pub mod apiserver;
pub mod bed;
pub mod cf;
pub mod contract;
pub mod edge;
pub mod http;
pub mod idp;
pub mod partition;
pub mod tls;
