//! The LINSTOR REST API v1: types, return-code classification, and a budgeted client.
//!
//! Facts about the API (strict request JSON, "exists" as HTTP 500, deletes of missing objects
//! as 200 + warning, ...) are in `docs/reference/linstor.md`; this module encodes them once.

pub(crate) mod budget;
pub(crate) mod client;
pub(crate) mod error;
pub mod naming;
pub(crate) mod ops;
pub(crate) mod rc;
mod stream;
pub mod tls;
pub(crate) mod types;
pub(crate) mod version;

pub use client::{ClientConfig, LinstorClient};
pub use error::LinstorError;
pub use ops::{Op, OpKind};
