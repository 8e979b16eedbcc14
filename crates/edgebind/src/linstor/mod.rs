//! The LINSTOR REST API v1: types, return-code classification, and a budgeted client.
//!
//! Facts about the API (strict request JSON, "exists" as HTTP 500, deletes of missing objects
//! as 200 + warning, ...) are in `docs/reference/linstor.md`; this module encodes them once.

pub mod budget;
pub mod client;
pub mod error;
pub mod naming;
pub mod ops;
pub mod rc;
pub mod tls;
pub mod types;
pub mod version;

pub use client::{ClientConfig, LinstorClient};
pub use error::LinstorError;
pub use ops::{Op, OpKind};
