//! The route table of docs/edge-protocol.md §4 and the request bodies.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::policy::{Action, MAX_SAFE_INTEGER};

/// A recognized route with its path parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Volumes {
        ns: String,
    },
    Volume {
        ns: String,
        name: String,
    },
    Resize {
        ns: String,
        name: String,
    },
    Snapshots {
        ns: String,
        name: String,
    },
    Snapshot {
        ns: String,
        name: String,
        snap: String,
    },
    Restore {
        ns: String,
        name: String,
        snap: String,
    },
    CanI,
}

/// Whether a path segment is a DNS label of at most 63 characters.
pub fn dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

impl Route {
    /// The namespace the request acts on (`can-i` names it in its body instead).
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Route::Volumes { ns }
            | Route::Volume { ns, .. }
            | Route::Resize { ns, .. }
            | Route::Snapshots { ns, .. }
            | Route::Snapshot { ns, .. }
            | Route::Restore { ns, .. } => Some(ns),
            Route::CanI => None,
        }
    }

    /// Parses a path; `None` is `route_unknown`.
    pub fn parse(path: &str) -> Option<Route> {
        let rest = path.strip_prefix("/api/v1/")?;
        let seg: Vec<&str> = rest.split('/').collect();
        if seg == ["can-i"] {
            return Some(Route::CanI);
        }
        if seg.len() < 3 || seg[0] != "namespaces" || seg[2] != "volumes" || !dns_label(seg[1]) {
            return None;
        }
        let ns = seg[1].to_string();
        let label = |i: usize| seg.get(i).filter(|s| dns_label(s)).map(|s| s.to_string());
        Some(match seg.len() {
            3 => Route::Volumes { ns },
            4 => Route::Volume {
                ns,
                name: label(3)?,
            },
            5 if seg[4] == "resize" => Route::Resize {
                ns,
                name: label(3)?,
            },
            5 if seg[4] == "snapshots" => Route::Snapshots {
                ns,
                name: label(3)?,
            },
            6 if seg[4] == "snapshots" => Route::Snapshot {
                ns,
                name: label(3)?,
                snap: label(5)?,
            },
            7 if seg[4] == "snapshots" && seg[6] == "restore" => Route::Restore {
                ns,
                name: label(3)?,
                snap: label(5)?,
            },
            _ => return None,
        })
    }

    /// Methods the route accepts (for `405` and its `Allow` header).
    pub fn methods(&self) -> &'static [&'static str] {
        match self {
            Route::Volumes { .. } | Route::Snapshots { .. } => &["GET", "POST"],
            Route::Volume { .. } | Route::Snapshot { .. } => &["GET", "DELETE"],
            Route::Resize { .. } | Route::Restore { .. } | Route::CanI => &["POST"],
        }
    }

    /// The action of a method on this route (`None` for can-i).
    pub fn action(&self, method: &str) -> Option<Action> {
        Some(match (self, method) {
            (Route::CanI, _) => return None,
            (_, "GET") => Action::Read,
            (Route::Volumes { .. }, _) => Action::Create,
            (Route::Volume { .. } | Route::Snapshot { .. }, _) => Action::Delete,
            (Route::Resize { .. }, _) => Action::Resize,
            (Route::Snapshots { .. }, _) => Action::Snapshot,
            (Route::Restore { .. }, _) => Action::Restore,
        })
    }

    /// A label of bounded cardinality for metrics.
    pub fn template(&self) -> &'static str {
        match self {
            Route::Volumes { .. } => "/api/v1/namespaces/{ns}/volumes",
            Route::Volume { .. } => "/api/v1/namespaces/{ns}/volumes/{name}",
            Route::Resize { .. } => "/api/v1/namespaces/{ns}/volumes/{name}/resize",
            Route::Snapshots { .. } => "/api/v1/namespaces/{ns}/volumes/{name}/snapshots",
            Route::Snapshot { .. } => "/api/v1/namespaces/{ns}/volumes/{name}/snapshots/{snap}",
            Route::Restore { .. } => {
                "/api/v1/namespaces/{ns}/volumes/{name}/snapshots/{snap}/restore"
            }
            Route::CanI => "/api/v1/can-i",
        }
    }
}

/// `POST .../volumes`.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateBody {
    pub name: String,
    pub size_bytes: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `POST .../resize`.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResizeBody {
    pub size_bytes: u64,
}

/// `POST .../snapshots`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct SnapshotBody {
    pub name: String,
}

/// `POST .../restore`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `POST /api/v1/can-i`.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanIBody {
    pub namespace: String,
    pub action: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub size_bytes: Option<u64>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Whether `sizeBytes` is in 1 .. 2^53-1.
pub fn valid_size(s: u64) -> bool {
    (1..=MAX_SAFE_INTEGER).contains(&s)
}

/// Kubernetes label key (optional DNS prefix `/` name) and value rules.
pub fn valid_labels(labels: &BTreeMap<String, String>) -> bool {
    fn name_part(s: &str) -> bool {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
    }
    labels.iter().all(|(k, v)| {
        let key_ok = match k.rsplit_once('/') {
            Some((prefix, name)) => {
                prefix.len() <= 253 && prefix.split('.').all(dns_label) && name_part(name)
            }
            None => name_part(k),
        };
        key_ok && (v.is_empty() || name_part(v))
    })
}

/// Parses a JSON body strictly: members must be known (serde) and unique. serde's derive
/// refuses duplicate struct members; duplicate label keys are caught by a raw scan.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    let raw: serde_json::Value = serde_json::from_slice(body).ok()?;
    if has_duplicate_members(body) {
        return None;
    }
    serde_json::from_value(raw).ok()
}

/// Whether any JSON object in the text repeats a member name (serde_json keeps the last).
fn has_duplicate_members(body: &[u8]) -> bool {
    struct Dup(bool);
    impl<'de> serde::de::Visitor<'de> for &mut Dup {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(k) = m.next_key::<String>()? {
                if !seen.insert(k) {
                    self.0 = true;
                }
                m.next_value_seed(&mut *self)?;
            }
            Ok(())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
            while s.next_element_seed(&mut *self)?.is_some() {}
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }
    impl<'de> serde::de::DeserializeSeed<'de> for &mut Dup {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    let mut dup = Dup(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    use serde::de::DeserializeSeed;
    if (&mut dup).deserialize(&mut de).is_err() {
        return true;
    }
    dup.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_and_refuse() {
        assert_eq!(
            Route::parse("/api/v1/namespaces/team-a/volumes/pvc-1/snapshots/s1/restore"),
            Some(Route::Restore {
                ns: "team-a".into(),
                name: "pvc-1".into(),
                snap: "s1".into()
            })
        );
        assert_eq!(Route::parse("/api/v1/can-i"), Some(Route::CanI));
        for bad in [
            "/api/v1/namespaces/team-a/volumes/",
            "/api/v1/namespaces/Team/volumes",
            "/api/v1/namespaces/a/volumes/-x",
            "/api/v2/namespaces/a/volumes",
            "/api/v1/namespaces/a/volumes/x/resize/",
            "/api/v1/namespaces/a/volumes/x/other",
        ] {
            assert_eq!(Route::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn bodies_are_strict() {
        assert!(parse_body::<CreateBody>(br#"{"name":"a","sizeBytes":1}"#).is_some());
        assert!(parse_body::<CreateBody>(br#"{"name":"a","sizeBytes":1,"x":1}"#).is_none());
        assert!(parse_body::<CreateBody>(br#"{"name":"a","name":"b","sizeBytes":1}"#).is_none());
        assert!(
            parse_body::<CreateBody>(br#"{"name":"a","sizeBytes":1,"labels":{"k":"1","k":"2"}}"#)
                .is_none()
        );
        assert!(parse_body::<CreateBody>(br#"{"name":"a","sizeBytes":"1"}"#).is_none());
        assert!(parse_body::<CreateBody>(b"nope").is_none());
    }

    #[test]
    fn label_rules() {
        let ok: BTreeMap<String, String> = [
            ("app.kubernetes.io/name".into(), "x".into()),
            ("tier".into(), "".into()),
        ]
        .into();
        assert!(valid_labels(&ok));
        let bad: BTreeMap<String, String> = [("-x".into(), "y".into())].into();
        assert!(!valid_labels(&bad));
    }
}
