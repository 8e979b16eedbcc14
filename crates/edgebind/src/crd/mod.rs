//! The custom resources of `edgebind.dev/v1alpha1`, generated into `crds/` by `edgebind crds`.

pub mod account;
pub mod backend;
pub mod binding;
pub mod conditions;
pub mod issuer;
pub mod phase;
pub mod policy;
pub mod quantity;
pub mod reasons;
pub mod snapshot;
pub mod volume;

#[cfg(test)]
mod admission_vectors_tests;

pub use account::{CloudflareAccount, CloudflareAccountSpec, CloudflareAccountStatus};
pub use backend::{LinstorBackend, LinstorBackendSpec, LinstorBackendStatus};
pub use binding::{EdgeBinding, EdgeBindingSpec, EdgeBindingStatus};
pub use issuer::{IdentityIssuer, IdentityIssuerSpec, IdentityIssuerStatus};
pub use policy::{VolumeAccessPolicy, VolumeAccessPolicySpec, VolumeAccessPolicyStatus};
pub use snapshot::{EdgeSnapshot, EdgeSnapshotSpec, EdgeSnapshotStatus};
pub use volume::{EdgeVolume, EdgeVolumeSpec, EdgeVolumeStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every edgebind kind.
pub const GROUP: &str = "edgebind.dev";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";

/// Every CRD edgebind defines, in a stable order (the order of `crds/`).
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        LinstorBackend::crd(),
        EdgeVolume::crd(),
        EdgeSnapshot::crd(),
        IdentityIssuer::crd(),
        VolumeAccessPolicy::crd(),
        CloudflareAccount::crd(),
        EdgeBinding::crd(),
    ]
}

/// Renders CRDs as one multi-document YAML stream, the format of the files in `crds/`.
pub fn to_yaml(crds: &[CustomResourceDefinition]) -> anyhow::Result<String> {
    let mut out = String::new();
    for crd in crds {
        out.push_str("---\n");
        out.push_str(&quote_dates(&serde_yaml::to_string(crd)?));
    }
    Ok(out)
}

/// The YAML writer leaves `2025-09-01` unquoted (a string in YAML 1.2), but YAML 1.1 readers,
/// which many Kubernetes tools are, take it for a timestamp. Quote such scalars.
fn quote_dates(yaml: &str) -> String {
    static DATE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?m)^(\s*(?:- )?(?:[A-Za-z0-9_.-]+: )?)(\d{4}-\d{2}-\d{2})$")
            .expect("valid regex")
    });
    DATE.replace_all(yaml, "$1'$2'").into_owned()
}

/// Deletion policy shared by volumes and snapshots.
#[derive(
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
)]
pub enum DeletionPolicy {
    /// Keep the LINSTOR objects and their data; they are marked as released.
    #[default]
    Retain,
    /// Delete the LINSTOR objects (and, for a volume, the snapshots edgebind made of it).
    Delete,
}
