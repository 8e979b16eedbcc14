//! Validation the API server cannot do (CEL catches the rest): the checked spec the planner uses.

use crate::crd::DeletionPolicy;
use crate::crd::quantity;
use crate::crd::volume::{EdgeVolumeSpec, Layer, PersistentVolumeRequest};
use crate::linstor::naming;
use crate::linstor::types::Props;

/// Longest property value LINSTOR's SQL backends store (`PROPS_CONTAINERS.PROP_VALUE
/// VARCHAR(4096)`, linstor-server `…/dbcp/migration/2018_03_27_14_01_consolidated-init-db.sql`).
pub const PROP_VALUE_MAX: usize = 4096;

/// Default number of diskful replicas when neither `placeCount` nor a resource group is given.
pub const DEFAULT_PLACE_COUNT: u32 = 2;

#[derive(Clone, Debug, PartialEq)]
pub enum ValidPlacement {
    Group(String),
    Explicit {
        place_count: u32,
        storage_pools: Vec<String>,
        replicas_on_same: Vec<String>,
        replicas_on_different: Vec<String>,
        layers: Vec<String>,
        diskless_on_remaining: Option<bool>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ValidSpec {
    pub size_kib: u64,
    pub placement: ValidPlacement,
    /// User properties, keyed as LINSTOR keys (`Aux/<key>`).
    pub props: Props,
    pub deletion_policy: DeletionPolicy,
    pub source_snapshot: Option<String>,
    /// The PersistentVolume wanted, if any.
    pub persistent_volume: Option<PersistentVolumeRequest>,
    /// `FileSystem/Type` for the resource definition: the filesystem LINSTOR makes for the PV.
    pub fs_type: Option<String>,
}

impl ValidSpec {
    /// Diskful replicas wanted; `None` when a resource group decides.
    pub fn place_count(&self) -> Option<u32> {
        match &self.placement {
            ValidPlacement::Group(_) => None,
            ValidPlacement::Explicit { place_count, .. } => Some(*place_count),
        }
    }
}

/// Checks a spec; the error is a message for a `Ready=False, reason=InvalidSpec` condition.
pub fn validate(spec: &EdgeVolumeSpec) -> Result<ValidSpec, String> {
    let bytes = quantity::parse_bytes(&spec.size)?;
    if bytes == 0 {
        return Err("size must be greater than zero".into());
    }
    // DRBD needs some room for metadata; a volume below 4 MiB is never what anyone meant.
    if bytes < 4 << 20 {
        return Err(format!("size {} is below the 4Mi minimum", spec.size));
    }
    let p = &spec.placement;
    let placement = match &p.resource_group {
        Some(rg) => {
            if !naming::is_valid(rg) {
                return Err(format!(
                    "resourceGroup {rg:?} is not a valid LINSTOR name (2-48 letters, digits, '_' or '-', starting with a letter)"
                ));
            }
            ValidPlacement::Group(rg.clone())
        }
        None => {
            let pools = p.storage_pools.clone().unwrap_or_default();
            if let Some(bad) = pools.iter().find(|s| !naming::is_valid(s)) {
                return Err(format!("storage pool {bad:?} is not a valid LINSTOR name"));
            }
            let layers: Vec<Layer> = p.layer_list.clone().unwrap_or_default();
            if !layers.is_empty()
                && layers.last() != Some(&Layer::Storage)
                && layers.last() != Some(&Layer::Nvme)
            {
                return Err(
                    "layerList must end with storage (or nvme), for example [drbd, storage]".into(),
                );
            }
            ValidPlacement::Explicit {
                place_count: p.place_count.unwrap_or(DEFAULT_PLACE_COUNT),
                storage_pools: pools,
                replicas_on_same: p.replicas_on_same.clone().unwrap_or_default(),
                replicas_on_different: p.replicas_on_different.clone().unwrap_or_default(),
                layers: layers
                    .iter()
                    .map(|l| l.linstor_name().to_string())
                    .collect(),
                diskless_on_remaining: p.diskless_on_remaining,
            }
        }
    };
    let mut props = Props::new();
    for (k, v) in &spec.properties {
        if k.starts_with("edgebind.dev/") {
            return Err(format!("property key {k:?} is reserved for edgebind"));
        }
        // LINSTOR stores keys with empty segments dropped (`PropsContainer.sanitizePath`:
        // `team//a` becomes `team/a`, `team/` becomes `team`), so such a key would never read
        // back as written and the diff would never settle.
        if k.is_empty() || k.split('/').any(str::is_empty) {
            return Err(format!(
                "property key {k:?} has an empty path segment (a leading, trailing or doubled '/'); LINSTOR would store it as {:?}",
                k.split('/')
                    .filter(|p| !p.is_empty())
                    .collect::<Vec<_>>()
                    .join("/")
            ));
        }
        let key = format!("Aux/{k}");
        // `PropsContainer.PATH_MAX_LENGTH`.
        if key.len() > 256 {
            return Err(format!("property key {k:?} is too long for LINSTOR"));
        }
        // The SQL backends store values in `PROP_VALUE VARCHAR(4096)` and refuse longer ones.
        if v.chars().count() > PROP_VALUE_MAX {
            return Err(format!(
                "the value of property {k:?} has {} characters; LINSTOR stores at most {PROP_VALUE_MAX}",
                v.chars().count()
            ));
        }
        props.insert(key, v.clone());
    }
    if let (Some(_), ValidPlacement::Explicit { layers, .. }) =
        (&spec.persistent_volume, &placement)
        && !layers.is_empty()
        && !layers.iter().any(|l| l == "DRBD" || l == "NVME")
    {
        // The PV lets pods on any node attach, which needs a diskless client (DRBD or NVMe);
        // a storage-only volume exists on its replicas' nodes only.
        return Err("persistentVolume needs a drbd (or nvme) layer in layerList: pods attach the volume from any node through it".into());
    }
    Ok(ValidSpec {
        size_kib: quantity::bytes_to_kib_ceil(bytes),
        placement,
        props,
        deletion_policy: spec.deletion_policy,
        source_snapshot: spec.source.as_ref().map(|s| s.snapshot.clone()),
        persistent_volume: spec.persistent_volume.clone(),
        fs_type: spec
            .persistent_volume
            .as_ref()
            .and_then(super::pv::fs_type)
            .map(|f| f.as_str().to_string()),
    })
}
