//! The gatekeeper Worker bundled into the binary (built from `worker/src` by `worker/build.mjs`).

use sha2::{Digest, Sha256};

/// The bundled module Worker.
pub const WORKER_JS: &[u8] = include_bytes!("../../../../worker/dist/worker.js");
/// Name of the main module part in uploads.
pub const MAIN_MODULE: &str = "worker.js";

/// `sha256:<hex>` of some bytes: the form used for content and secret hashes in status.
pub fn sha256_tagged(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}
