//! The trusted edge public keys (key id -> Ed25519 verifying key), loaded from the Secret the
//! controller maintains and swapped atomically so a rotation needs no restart.
//!
//! Secret format (docs/edge-protocol.md §8.1): every data entry named `<keyid>.pub` holds one
//! public key, either the base64url (no padding) of the raw 32-byte key (the JWK `x`) or a PEM
//! `PUBLIC KEY` (SPKI), and `<keyid>.namespace` the one namespace the key may sign for. A key
//! without a namespace is not trusted: a key grants exactly its scope, and an unscoped one would
//! reach every tenant. `<keyid>.binding`, when present, names the EdgeBinding (in that namespace)
//! the key was made for: volumes created through the key take that binding's volume defaults.
//! Other entries are ignored; invalid entries are skipped and reported.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::VerifyingKey;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { OID 1.3.101.112 },
/// BIT STRING (33 bytes, 0 unused bits) }; the 32 key bytes follow.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Whether a key id follows the profile (`^[A-Za-z0-9._:-]{1,128}$`).
pub fn valid_key_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A namespace name: an RFC 1123 label.
fn valid_namespace(ns: &str) -> bool {
    (1..=63).contains(&ns.len())
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ns.starts_with('-')
        && !ns.ends_with('-')
}

/// Parses one public key value: base64url raw key, or PEM SPKI.
pub fn parse_public_key(value: &[u8]) -> Result<VerifyingKey, String> {
    let text = std::str::from_utf8(value).map_err(|_| "not UTF-8".to_string())?;
    let text = text.trim();
    let raw: Vec<u8> = if let Some(rest) = text.strip_prefix("-----BEGIN PUBLIC KEY-----") {
        let body = rest
            .strip_suffix("-----END PUBLIC KEY-----")
            .ok_or("PEM without END PUBLIC KEY line")?;
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = STANDARD
            .decode(b64)
            .map_err(|_| "PEM body is not base64".to_string())?;
        match der.strip_prefix(&SPKI_ED25519_PREFIX[..]) {
            Some(k) => k.to_vec(),
            None => return Err("PEM is not an Ed25519 SPKI public key".into()),
        }
    } else {
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| "not base64url without padding".to_string())?
    };
    let bytes: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| format!("key has {} bytes, want 32", raw.len()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not a valid Ed25519 point".to_string())
}

/// A binding name: a DNS subdomain (RFC 1123), as Kubernetes object names are.
fn valid_binding_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// One trusted key, the namespace it may sign for and the binding it was made for.
#[derive(Clone, Debug)]
struct Trusted {
    key: VerifyingKey,
    namespace: String,
    binding: Option<String>,
}

/// An immutable set of trusted keys.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: BTreeMap<String, Trusted>,
}

impl KeySet {
    /// Keys as `(key id, key, the namespace it may sign for)`.
    pub fn new(keys: impl IntoIterator<Item = (String, VerifyingKey, String)>) -> Self {
        KeySet {
            keys: keys
                .into_iter()
                .map(|(id, key, namespace)| {
                    let binding = None;
                    (
                        id,
                        Trusted {
                            key,
                            namespace,
                            binding,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Builds the set from a Secret's `data`. Returns the set and one message per skipped entry
    /// (entry name and why; never the value).
    pub fn from_secret_data<'a>(
        data: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> (Self, Vec<String>) {
        let data: BTreeMap<&str, &[u8]> = data.into_iter().collect();
        let mut keys = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, value) in &data {
            let Some(id) = name.strip_suffix(".pub") else {
                continue;
            };
            if !valid_key_id(id) {
                problems.push(format!("{name}: key id is not [A-Za-z0-9._:-]{{1,128}}"));
                continue;
            }
            let scope = data.get(format!("{id}.namespace").as_str());
            let namespace = match scope.map(|v| std::str::from_utf8(v).map(str::trim)) {
                Some(Ok(ns)) if valid_namespace(ns) => ns.to_string(),
                Some(_) => {
                    problems.push(format!(
                        "{id}.namespace: not a namespace name; key not trusted"
                    ));
                    continue;
                }
                None => {
                    problems.push(format!("{name}: no {id}.namespace entry; key not trusted"));
                    continue;
                }
            };
            let binding = match data.get(format!("{id}.binding").as_str()) {
                None => None,
                Some(v) => match std::str::from_utf8(v).map(str::trim) {
                    Ok(b) if valid_binding_name(b) => Some(b.to_string()),
                    _ => {
                        problems.push(format!("{id}.binding: not an object name; key not trusted"));
                        continue;
                    }
                },
            };
            match parse_public_key(value) {
                Ok(key) => {
                    let t = Trusted {
                        key,
                        namespace,
                        binding,
                    };
                    keys.insert(id.to_string(), t);
                }
                Err(e) => problems.push(format!("{name}: {e}")),
            }
        }
        (KeySet { keys }, problems)
    }

    pub fn get(&self, key_id: &str) -> Option<&VerifyingKey> {
        self.keys.get(key_id).map(|t| &t.key)
    }

    /// The namespace a key may sign for.
    pub fn namespace_of(&self, key_id: &str) -> Option<&str> {
        self.keys.get(key_id).map(|t| t.namespace.as_str())
    }

    /// The EdgeBinding a key was made for (keys published before bindings were recorded: none).
    pub fn binding_of(&self, key_id: &str) -> Option<&str> {
        self.keys.get(key_id).and_then(|t| t.binding.as_deref())
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The live key set, shared by request handlers and the reloader. A reload replaces the whole
/// set at once; in-flight requests keep the set they started with.
#[derive(Clone, Debug, Default)]
pub struct KeyStore {
    inner: Arc<RwLock<Arc<KeySet>>>,
}

impl KeyStore {
    pub fn new(set: KeySet) -> Self {
        KeyStore {
            inner: Arc::new(RwLock::new(Arc::new(set))),
        }
    }

    pub fn current(&self) -> Arc<KeySet> {
        // A poisoned lock only means a writer panicked mid-swap of an Arc, which cannot leave a
        // torn value; keep serving.
        match self.inner.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn replace(&self, set: KeySet) {
        let new = Arc::new(set);
        match self.inner.write() {
            Ok(mut g) => *g = new,
            Err(p) => *p.into_inner() = new,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: &str = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs";
    const PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n";

    #[test]
    fn raw_and_pem_forms_give_the_same_key() {
        let a = parse_public_key(X.as_bytes()).expect("raw");
        let b = parse_public_key(PEM.as_bytes()).expect("pem");
        assert_eq!(a, b);
    }

    #[test]
    fn secret_data_skips_bad_entries_without_values() {
        let data: Vec<(&str, &[u8])> = vec![
            ("edge-1.pub", X.as_bytes()),
            ("edge-1.namespace", b"team-a"),
            ("edge-2.pub", b"not-a-key!"),
            ("edge-2.namespace", b"team-a"),
            ("bad id.pub", X.as_bytes()),
            ("README", b"ignored"),
        ];
        let (set, problems) = KeySet::from_secret_data(data);
        assert_eq!(set.key_ids().collect::<Vec<_>>(), vec!["edge-1"]);
        assert_eq!(set.namespace_of("edge-1"), Some("team-a"));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| !p.contains("not-a-key")));
    }

    #[test]
    fn a_key_without_a_valid_namespace_is_not_trusted() {
        let data: Vec<(&str, &[u8])> = vec![
            ("unscoped.pub", X.as_bytes()),
            ("bad-scope.pub", X.as_bytes()),
            ("bad-scope.namespace", b"Team_A"),
        ];
        let (set, problems) = KeySet::from_secret_data(data);
        assert!(set.is_empty(), "{:?}", set.key_ids().collect::<Vec<_>>());
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn a_key_names_its_binding_and_a_malformed_binding_is_not_trusted() {
        let data: Vec<(&str, &[u8])> = vec![
            ("a.pub", X.as_bytes()),
            ("a.namespace", b"team-a"),
            ("a.binding", b"storage-api"),
            ("old.pub", X.as_bytes()),
            ("old.namespace", b"team-a"),
            ("bad.pub", X.as_bytes()),
            ("bad.namespace", b"team-a"),
            ("bad.binding", b"Not/A Name"),
        ];
        let (set, problems) = KeySet::from_secret_data(data);
        assert_eq!(set.binding_of("a"), Some("storage-api"));
        assert_eq!(
            set.binding_of("old"),
            None,
            "published before bindings were recorded"
        );
        assert!(set.get("old").is_some());
        assert!(set.get("bad").is_none(), "{problems:?}");
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn store_swaps_whole_sets() {
        let k = parse_public_key(X.as_bytes()).expect("raw");
        let store = KeyStore::new(KeySet::new([("a".to_string(), k, "ns".to_string())]));
        let before = store.current();
        store.replace(KeySet::new([("b".to_string(), k, "ns".to_string())]));
        assert!(before.get("a").is_some());
        assert!(store.current().get("a").is_none());
        assert!(store.current().get("b").is_some());
    }
}
