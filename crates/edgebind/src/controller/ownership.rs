//! Ownership markers on LINSTOR objects. edgebind changes or deletes only what carries its
//! marker with the owner's uid; anything else is a `Conflict`, never an overwrite.

use crate::linstor::types::Props;

pub const MANAGED_BY: &str = "Aux/edgebind.dev/managed-by";
pub const OWNER_UID: &str = "Aux/edgebind.dev/owner-uid";
pub const OWNER_KIND: &str = "Aux/edgebind.dev/owner-kind";
pub const OWNER_NAMESPACE: &str = "Aux/edgebind.dev/owner-namespace";
pub const OWNER_NAME: &str = "Aux/edgebind.dev/owner-name";
/// Set when the owner was deleted with `deletionPolicy: Retain`.
pub const RELEASED: &str = "Aux/edgebind.dev/released";
/// The user property keys edgebind set last time, so removed ones can be deleted (and keys
/// others set are left alone).
pub const LAST_APPLIED: &str = "Aux/edgebind.dev/last-applied";
/// `<namespace>/<EdgeSnapshot>` a volume was restored from.
pub const RESTORED_FROM: &str = "Aux/edgebind.dev/restored-from";
pub const MANAGER: &str = "edgebind";

/// The Kubernetes object a LINSTOR object belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    pub fn marker(&self) -> Props {
        Props::from([
            (MANAGED_BY.to_string(), MANAGER.to_string()),
            (OWNER_UID.to_string(), self.uid.clone()),
            (OWNER_KIND.to_string(), self.kind.to_string()),
            (OWNER_NAMESPACE.to_string(), self.namespace.clone()),
            (OWNER_NAME.to_string(), self.name.clone()),
        ])
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Nothing there yet.
    Absent,
    /// Ours (marker with our uid).
    Ours,
    /// Left behind by a deleted owner with `Retain`; adoptable on explicit request.
    Released { previous: String },
    /// Not ours: never touched.
    Foreign { why: String },
}

/// Classifies an existing object's properties (`None`: the object does not exist).
pub fn classify(props: Option<&Props>, owner: &Owner) -> Ownership {
    let Some(props) = props else {
        return Ownership::Absent;
    };
    if props.get(MANAGED_BY).map(String::as_str) != Some(MANAGER) {
        return Ownership::Foreign {
            why: "it was not created by edgebind".into(),
        };
    }
    let prev = format!(
        "{}/{}",
        props
            .get(OWNER_NAMESPACE)
            .map(String::as_str)
            .unwrap_or("?"),
        props.get(OWNER_NAME).map(String::as_str).unwrap_or("?")
    );
    match props.get(OWNER_UID) {
        Some(uid) if *uid == owner.uid => Ownership::Ours,
        _ if props.get(RELEASED).map(String::as_str) == Some("true") => {
            Ownership::Released { previous: prev }
        }
        _ => Ownership::Foreign {
            why: format!("it belongs to another edgebind object ({prev})"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: &str) -> Owner {
        Owner {
            kind: "EdgeVolume",
            namespace: "ns".into(),
            name: "v".into(),
            uid: uid.into(),
        }
    }

    #[test]
    fn classification() {
        let me = owner("u1");
        assert_eq!(classify(None, &me), Ownership::Absent);
        assert_eq!(classify(Some(&me.marker()), &me), Ownership::Ours);
        assert!(matches!(
            classify(Some(&Props::new()), &me),
            Ownership::Foreign { .. }
        ));
        let mut other = owner("u0").marker();
        assert!(matches!(
            classify(Some(&other), &me),
            Ownership::Foreign { .. }
        ));
        other.insert(RELEASED.into(), "true".into());
        assert_eq!(
            classify(Some(&other), &me),
            Ownership::Released {
                previous: "ns/v".into()
            }
        );
    }
}
