//! Building Worker uploads: the `multipart/form-data` body with its `metadata` part.
//!
//! Every upload sends `keep_bindings` for the secret types, so secrets set through the secrets
//! API survive a code upload (a re-upload otherwise replaces the whole binding list).

use bytes::Bytes;
use serde_json::{Value, json};

use super::worker::{MAIN_MODULE, sha256_tagged};

/// Binding types carried over from the previous version on every upload.
pub(crate) const KEEP_BINDINGS: &[&str] = &["secret_text", "secret_key"];

/// Share of requests whose logs Workers Logs keeps: all of them, since the Worker's audit
/// lines go there (README "Audit") and a sampled audit trail has holes.
pub(crate) const LOGS_HEAD_SAMPLING_RATE: f64 = 1.0;

/// The script's `observability` setting: Workers Logs on, every request kept. Shape from the
/// upload metadata's `observability` (cloudflare-python 5.9.0
/// `types/workers/script_update_params.py`, `MetadataObservability`;
/// https://developers.cloudflare.com/workers/observability/logs/workers-logs/#enable-workers-logs).
/// A script setting: only the script upload carries it, a version upload does not.
pub(crate) fn observability() -> Value {
    json!({"enabled": true, "head_sampling_rate": LOGS_HEAD_SAMPLING_RATE})
}

/// What a script upload consists of, apart from secrets.
#[derive(Clone, PartialEq)]
pub struct ScriptUpload {
    pub script_name: String,
    pub module: Bytes,
    pub compatibility_date: String,
    /// `plain_text` bindings (name, value): configuration that is not secret.
    pub plain_bindings: Vec<(String, String)>,
    /// Script tags (ownership marker).
    pub tags: Vec<String>,
    /// `vpc_service` bindings (name, connectivity directory service id): the Worker reaches
    /// the gateway through the account's Workers VPC service.
    pub vpc_services: Vec<(String, String)>,
}

impl std::fmt::Debug for ScriptUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptUpload")
            .field("script_name", &self.script_name)
            .field("module_bytes", &self.module.len())
            .field("compatibility_date", &self.compatibility_date)
            .field("plain_bindings", &self.plain_bindings)
            .field("tags", &self.tags)
            .field("vpc_services", &self.vpc_services)
            .finish()
    }
}

impl ScriptUpload {
    /// Content hash of everything the upload sets: a re-upload is needed only when it changes.
    pub fn content_hash(&self) -> String {
        let mut meta = json!({
            "module": sha256_tagged(&self.module),
            "compatibility_date": self.compatibility_date,
            "bindings": self.plain_bindings,
            "tags": self.tags,
            "observability": observability(),
        });
        // Only when present, so Workers without one keep their hash (no re-upload on upgrade).
        if !self.vpc_services.is_empty() {
            meta["vpc_services"] = json!(self.vpc_services);
        }
        sha256_tagged(meta.to_string().as_bytes())
    }

    fn bindings(&self, extra_secrets: &[(String, String)]) -> Vec<Value> {
        let mut b: Vec<Value> = self
            .plain_bindings
            .iter()
            .map(|(n, v)| json!({"type": "plain_text", "name": n, "text": v}))
            .collect();
        // `workers_binding_kind_vpc_service` (specs/cloudflare-workers.yaml).
        b.extend(
            self.vpc_services
                .iter()
                .map(|(n, id)| json!({"type": "vpc_service", "name": n, "service_id": id})),
        );
        b.extend(
            extra_secrets
                .iter()
                .map(|(n, v)| json!({"type": "secret_text", "name": n, "text": v})),
        );
        b
    }

    /// Metadata of `PUT .../scripts/{name}` (upload and deploy), setting `secrets` in the same
    /// version (named bindings win over kept ones of the same name: the
    /// `wrangler versions secret put` flow, reference §2).
    pub fn script_metadata(&self, secrets: &[(String, String)]) -> Value {
        json!({
            "main_module": MAIN_MODULE,
            "compatibility_date": self.compatibility_date,
            "bindings": self.bindings(secrets),
            "keep_bindings": KEEP_BINDINGS,
            "tags": self.tags,
            "observability": observability(),
        })
    }

    /// Metadata of `POST .../versions` (upload without deploying), carrying secrets to set.
    pub fn version_metadata(&self, secrets: &[(String, String)], message: &str) -> Value {
        json!({
            "main_module": MAIN_MODULE,
            "compatibility_date": self.compatibility_date,
            "bindings": self.bindings(secrets),
            "keep_bindings": KEEP_BINDINGS,
            "annotations": {"workers/message": message},
        })
    }

    /// The multipart body for `metadata`; returns (content type, body).
    pub fn form(&self, metadata: &Value) -> (String, Vec<u8>) {
        let boundary = format!("edgebind-{}", uuid::Uuid::new_v4().simple());
        let mut body = Vec::with_capacity(self.module.len() + 1024);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"blob\"\r\nContent-Type: application/json\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(metadata.to_string().as_bytes());
        body.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"{MAIN_MODULE}\"; filename=\"{MAIN_MODULE}\"\r\nContent-Type: application/javascript+module\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&self.module);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> ScriptUpload {
        ScriptUpload {
            script_name: "gw".into(),
            module: Bytes::from_static(b"export default { fetch() {} }"),
            compatibility_date: "2025-09-01".into(),
            plain_bindings: vec![("GATEWAY_URL".into(), "https://gw.example.com".into())],
            tags: vec!["edgebind".into()],
            vpc_services: Vec::new(),
        }
    }

    #[test]
    fn hash_follows_content_and_settings() {
        let a = up();
        assert_eq!(a.content_hash(), up().content_hash());
        let mut b = up();
        b.module = Bytes::from_static(b"export default { fetch() { return 1 } }");
        assert_ne!(a.content_hash(), b.content_hash());
        let mut c = up();
        c.plain_bindings[0].1 = "https://other.example.com".into();
        assert_ne!(a.content_hash(), c.content_hash());
        let mut d = up();
        d.vpc_services = vec![("GATEWAY".into(), "svc-1".into())];
        assert_ne!(a.content_hash(), d.content_hash());
        let m = d.script_metadata(&[]);
        assert_eq!(
            m["bindings"][1],
            json!({"type": "vpc_service", "name": "GATEWAY", "service_id": "svc-1"})
        );
    }

    #[test]
    fn script_upload_turns_on_workers_logs_for_every_request() {
        let m = up().script_metadata(&[]);
        assert_eq!(
            m["observability"],
            json!({"enabled": true, "head_sampling_rate": 1.0})
        );
        // A version upload has no script settings.
        assert!(
            up().version_metadata(&[], "m")
                .get("observability")
                .is_none()
        );
    }

    #[test]
    fn script_upload_can_carry_secrets() {
        let m = up().script_metadata(&[("SIGNING_KEY".into(), "k".into())]);
        let b = m["bindings"].as_array().unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[1],
            json!({"type": "secret_text", "name": "SIGNING_KEY", "text": "k"})
        );
        assert_eq!(m["keep_bindings"], json!(["secret_text", "secret_key"]));
    }

    #[test]
    fn metadata_keeps_secret_bindings() {
        let m = up().script_metadata(&[]);
        assert_eq!(m["main_module"], "worker.js");
        assert_eq!(m["keep_bindings"], json!(["secret_text", "secret_key"]));
        assert_eq!(m["bindings"][0]["type"], "plain_text");
        let (ct, body) = up().form(&m);
        assert!(ct.starts_with("multipart/form-data; boundary=edgebind-"));
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("name=\"metadata\""));
        assert!(text.contains("application/javascript+module"));
        assert!(text.trim_end().ends_with("--"));
    }
}
