//! The in-cluster edge gateway (`edgebind gateway`): verifies requests signed by the Worker,
//! decides policy authoritatively and acts by writing custom resources. It never calls LINSTOR.

pub mod api;
pub mod audit;
pub mod backend;
pub mod claims;
pub mod compile;
pub mod events;
pub mod identity;
pub mod keys;
pub(crate) mod metrics;
pub mod policy;
pub(crate) mod ratelimit;
pub(crate) mod reason;
pub mod refusals;
pub mod replay;
pub mod routes;
pub mod server;
pub mod signature;
pub mod token;

pub use server::{GatewayArgs, run};
