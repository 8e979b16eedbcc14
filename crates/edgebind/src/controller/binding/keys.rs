//! Signing keys of the Worker: Ed25519 key pairs, their `SIGNING_KEY` JSON form, the public
//! form the gateways trust, and the pure rotation schedule.
//!
//! Rotation (docs/edge-protocol.md §8): generate a pending key and publish its public half to
//! the gateways; after the propagation wait, switch the Worker's `SIGNING_KEY` secret to it;
//! keep the old public key trusted for the overlap, then retire it. No code is re-uploaded.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use jiff::Timestamp;
use serde_json::json;

use crate::crd::binding::EdgeBindingStatus;

/// A generated key pair. Debug never shows the private half.
pub(crate) struct KeyPair {
    pub key_id: String,
    signing: SigningKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Key ids are `<namespace>.<binding>.<unix seconds>.<random>`: unique across bindings that
/// share the gateway key set, and valid both as a `keyId` (`^[A-Za-z0-9._:-]{1,128}$`) and as
/// a Secret data key.
pub(crate) fn new_key_id(namespace: &str, name: &str, now: Timestamp) -> String {
    let rnd: u32 = rand::random();
    let mut id = format!("{namespace}.{name}.{}.{rnd:08x}", now.as_second());
    id.truncate(128);
    id
}

impl KeyPair {
    pub(crate) fn generate(key_id: String) -> Self {
        let seed: [u8; 32] = rand::random();
        Self {
            key_id,
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// Reads the `SIGNING_KEY` JSON form back (JWK with `d`).
    pub(crate) fn from_signing_json(s: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(s).ok()?;
        let key_id = v.get("keyId")?.as_str()?.to_string();
        let d = URL_SAFE_NO_PAD
            .decode(v.get("jwk")?.get("d")?.as_str()?)
            .ok()?;
        let seed: [u8; 32] = d.try_into().ok()?;
        Some(Self {
            key_id,
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// base64url (no padding) of the raw 32-byte public key: the gateway's `<keyid>.pub`.
    pub(crate) fn public_b64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.signing.verifying_key().to_bytes())
    }

    /// The Worker's `SIGNING_KEY` binding value (JWK form, docs/edge-protocol.md §1.2).
    pub(crate) fn signing_json(&self) -> String {
        json!({
            "keyId": self.key_id,
            "jwk": {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": self.public_b64url(),
                "d": URL_SAFE_NO_PAD.encode(self.signing.to_bytes()),
            }
        })
        .to_string()
    }
}

/// Timing of rotations.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    /// Scheduled rotation period.
    pub period: Duration,
    /// Wait between publishing a public key to the gateways and switching the Worker to it.
    pub propagation: Duration,
    /// How long a replaced public key stays trusted.
    pub overlap: Duration,
}

/// What to do with the keys now.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct KeySteps {
    /// Remove the retiring key's public half from the gateways.
    pub retire: bool,
    /// Switch the Worker to the pending key.
    pub promote: bool,
    /// Generate a new pending key and publish its public half.
    pub generate: bool,
    /// When to look again (the next deadline), if any.
    pub wake_in: Option<Duration>,
}

fn ts(s: &Option<String>) -> Option<Timestamp> {
    s.as_deref().and_then(|s| s.parse().ok())
}

fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// The rotation steps due at `now`. `requested` is the `edgebind.dev/rotate-key` annotation.
pub(crate) fn steps(
    st: &EdgeBindingStatus,
    now: Timestamp,
    sched: Schedule,
    requested: Option<&str>,
) -> KeySteps {
    let mut out = KeySteps::default();
    let mut wake: Vec<Duration> = Vec::new();
    let add = |t: Timestamp, d: Duration| t + jiff::SignedDuration::try_from(d).unwrap_or_default();

    let mut retiring = st.retiring_key_id.is_some();
    if retiring {
        match ts(&st.retire_after) {
            Some(at) if at > now => wake.push(until(now, at)),
            _ => {
                out.retire = true;
                retiring = false;
            }
        }
    }
    let mut pending = st.pending_key_id.is_some();
    if pending {
        match ts(&st.pending_since).map(|t| add(t, sched.propagation)) {
            Some(at) if at > now => wake.push(until(now, at)),
            // Only one key in overlap at a time: wait for the retirement first.
            _ if retiring => {}
            _ => {
                out.promote = true;
                pending = false;
            }
        }
    }
    let has_current = st.current_key_id.is_some() || out.promote;
    let new_request = requested.is_some_and(|r| Some(r) != st.rotation_request.as_deref());
    if !pending && !out.promote {
        let due = match ts(&st.last_rotation) {
            Some(last) => {
                let at = add(last, sched.period);
                if at > now {
                    wake.push(until(now, at));
                    false
                } else {
                    true
                }
            }
            None => true,
        };
        if !has_current || due || new_request {
            out.generate = true;
            wake.push(sched.propagation);
        }
    }
    if out.promote {
        wake.push(sched.overlap);
    }
    out.wake_in = wake.into_iter().min();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHED: Schedule = Schedule {
        period: Duration::from_secs(3600),
        propagation: Duration::from_secs(30),
        overlap: Duration::from_secs(600),
    };

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn key_round_trip_and_formats() {
        let k = KeyPair::generate(new_key_id("team-a", "edge", at(0)));
        assert!(
            k.key_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c))
        );
        let pubk = URL_SAFE_NO_PAD.decode(k.public_b64url()).unwrap();
        assert_eq!(pubk.len(), 32);
        let j = k.signing_json();
        let back = KeyPair::from_signing_json(&j).expect("parses");
        assert_eq!(back.public_b64url(), k.public_b64url());
        assert_eq!(back.key_id, k.key_id);
        assert!(!format!("{k:?}").contains(&k.signing_json()));
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["jwk"]["crv"], "Ed25519");
        assert_eq!(v["jwk"]["x"], k.public_b64url());
    }

    #[test]
    fn first_key_is_generated_then_promoted_after_propagation() {
        let st = EdgeBindingStatus::default();
        let s = steps(&st, at(0), SCHED, None);
        assert!(s.generate && !s.promote && !s.retire);
        let st = EdgeBindingStatus {
            pending_key_id: Some("k1".into()),
            pending_since: Some(at(0).to_string()),
            ..Default::default()
        };
        let s = steps(&st, at(10), SCHED, None);
        assert_eq!(
            s,
            KeySteps {
                wake_in: Some(Duration::from_secs(20)),
                ..Default::default()
            }
        );
        let s = steps(&st, at(30), SCHED, None);
        assert!(s.promote && !s.generate);
    }

    #[test]
    fn scheduled_and_requested_rotation_then_retirement() {
        let st = EdgeBindingStatus {
            current_key_id: Some("k1".into()),
            last_rotation: Some(at(0).to_string()),
            ..Default::default()
        };
        let s = steps(&st, at(100), SCHED, None);
        assert!(!s.generate);
        assert_eq!(s.wake_in, Some(Duration::from_secs(3500)));
        assert!(steps(&st, at(3600), SCHED, None).generate);
        // On demand: a new annotation value rotates once.
        assert!(steps(&st, at(100), SCHED, Some("now")).generate);
        let acted = EdgeBindingStatus {
            rotation_request: Some("now".into()),
            ..st.clone()
        };
        assert!(!steps(&acted, at(100), SCHED, Some("now")).generate);
        // The old key is retired after the overlap, not before.
        let st = EdgeBindingStatus {
            current_key_id: Some("k2".into()),
            last_rotation: Some(at(0).to_string()),
            retiring_key_id: Some("k1".into()),
            retire_after: Some(at(600).to_string()),
            ..Default::default()
        };
        assert!(!steps(&st, at(599), SCHED, None).retire);
        assert!(steps(&st, at(600), SCHED, None).retire);
    }

    #[test]
    fn promotion_waits_while_another_key_is_retiring() {
        let st = EdgeBindingStatus {
            current_key_id: Some("k2".into()),
            last_rotation: Some(at(0).to_string()),
            retiring_key_id: Some("k1".into()),
            retire_after: Some(at(600).to_string()),
            pending_key_id: Some("k3".into()),
            pending_since: Some(at(0).to_string()),
            ..Default::default()
        };
        let s = steps(&st, at(100), SCHED, None);
        assert!(!s.promote && !s.generate && !s.retire);
        assert_eq!(s.wake_in, Some(Duration::from_secs(500)));
    }
}
