//! edgebind: a Kubernetes operator that binds LINSTOR replicated block storage to the
//! Cloudflare edge.

pub mod crd;
pub mod sim;
