//! edgebind: a Kubernetes operator that binds LINSTOR replicated block storage to the
//! Cloudflare edge. See `README.md` and `DESIGN.md` in the shared design folder.

pub mod sim;
