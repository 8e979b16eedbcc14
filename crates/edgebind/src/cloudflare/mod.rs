//! The Cloudflare API v4 client for the Workers subset edgebind uses: token verify, module
//! Worker upload, versions and deployments, per-script secrets, zone routes.
//!
//! Facts about the API (envelope, error codes, 10215, keep_bindings, rate limits) are in
//! `docs/reference/cloudflare.md`; this module encodes them once. Writes are values
//! ([`ops::CfOp`]) so the reconciler can plan them purely and `edgebind plan` can print them.

pub(crate) mod client;
pub(crate) mod error;
pub(crate) mod ops;
pub(crate) mod types;
pub(crate) mod upload;
pub mod worker;

pub use client::{CfClient, CfClientConfig};
pub use error::CfError;
pub use ops::CfOp;
