//! The Kubernetes side of signing keys: each binding's private keys (entries `current` and
//! `pending`, each a `SIGNING_KEY` JSON) and the public keys the gateways trust (the shared
//! Secret, one `<keyid>.pub`, `<keyid>.namespace` and `<keyid>.binding` each).
//!
//! Both live in the operator's namespace, never in a tenant's: whoever can read Secrets in a
//! binding's namespace must not be able to sign edge requests (issue 12). A Secret cannot be
//! owned across namespaces, so the private-key Secret is named after the binding's uid and
//! removed by the binding's finalizer.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::super::{Context, FIELD_MANAGER};
use crate::crd::binding::EdgeBinding;

pub(crate) const CURRENT: &str = "current";
pub(crate) const PENDING: &str = "pending";
/// Annotation on a private-key Secret naming its binding (`<namespace>/<name>`), for people.
pub(crate) const BINDING_ANNOTATION: &str = "edgebind.dev/binding";

/// `edgebind-signing-<binding uid>`: unique per binding, so a binding deleted and created again
/// under the same name never inherits the old one's keys.
pub(crate) fn key_secret_name(b: &EdgeBinding) -> String {
    format!(
        "edgebind-signing-{}",
        b.meta().uid.as_deref().unwrap_or("no-uid")
    )
}

fn key_api(ctx: &Context) -> Api<Secret> {
    Api::namespaced(ctx.client.clone(), &ctx.config.cloudflare.key_namespace)
}

/// The binding's private keys: (`current`, `pending`) `SIGNING_KEY` JSON strings.
pub(crate) async fn read_keys(
    ctx: &Context,
    b: &EdgeBinding,
) -> Result<(Option<String>, Option<String>), kube::Error> {
    let Some(s) = key_api(ctx).get_opt(&key_secret_name(b)).await? else {
        return Ok((None, None));
    };
    let data = s.data.unwrap_or_default();
    let get = |k: &str| {
        data.get(k)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    Ok((get(CURRENT), get(PENDING)))
}

/// Sets (`Some`) or removes (`None`) entries of the binding's key Secret, creating it when absent.
pub(crate) async fn write_keys(
    ctx: &Context,
    b: &EdgeBinding,
    changes: &[(&str, Option<&str>)],
) -> Result<(), kube::Error> {
    let api = key_api(ctx);
    let name = key_secret_name(b);
    if api.get_opt(&name).await?.is_none() {
        let data: BTreeMap<String, String> = changes
            .iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), STANDARD.encode(v))))
            .collect();
        let owner = format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any());
        let s: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ctx.config.cloudflare.key_namespace,
                         "labels": {"app.kubernetes.io/managed-by": "edgebind"},
                         "annotations": {BINDING_ANNOTATION: owner}},
            "type": "Opaque",
            "data": data,
        }))
        .map_err(kube::Error::SerdeError)?;
        api.create(&PostParams::default(), &s).await?;
        return Ok(());
    }
    merge_data(&api, &name, changes).await
}

/// Deletes the binding's private keys (the binding is going; its public keys are retired).
pub(crate) async fn delete_keys(ctx: &Context, b: &EdgeBinding) -> Result<(), kube::Error> {
    match key_api(ctx)
        .delete(&key_secret_name(b), &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn merge_data(
    api: &Api<Secret>,
    name: &str,
    changes: &[(&str, Option<&str>)],
) -> Result<(), kube::Error> {
    let data: serde_json::Map<String, Value> = changes
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                v.map(|v| Value::String(STANDARD.encode(v)))
                    .unwrap_or(Value::Null),
            )
        })
        .collect();
    api.patch(
        name,
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        },
        &Patch::Merge(json!({ "data": data })),
    )
    .await?;
    Ok(())
}

/// The gateways' entries for one public key (docs/edge-protocol.md §8.1).
pub(crate) struct PublicEntry<'a> {
    /// base64url of the raw public key (`<keyid>.pub`).
    pub key: &'a str,
    /// The binding's namespace (`<keyid>.namespace`): the gateways let the key sign for that
    /// namespace only.
    pub namespace: &'a str,
    /// The binding's name (`<keyid>.binding`): the gateways take the volume defaults of the
    /// binding a request came through from it.
    pub binding: &'a str,
}

/// Adds (`Some`) or removes (`None`) `<keyid>.pub`, `<keyid>.namespace` and `<keyid>.binding`
/// in the gateways' Secret.
pub(crate) async fn publish_public(
    ctx: &Context,
    key_id: &str,
    public: Option<PublicEntry<'_>>,
) -> Result<(), kube::Error> {
    let cf = &ctx.config.cloudflare;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &cf.key_namespace);
    let names = [
        format!("{key_id}.pub"),
        format!("{key_id}.namespace"),
        format!("{key_id}.binding"),
    ];
    let values = public.as_ref().map(|p| [p.key, p.namespace, p.binding]);
    let entries: Vec<(&str, Option<&str>)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), values.map(|v| v[i])))
        .collect();
    let exists = api.get_opt(&cf.gateway_keys_secret).await?.is_some();
    match (exists, values) {
        (false, None) => Ok(()),
        (false, Some(_)) => {
            let data: serde_json::Map<String, Value> = entries
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), Value::String(STANDARD.encode((*v)?)))))
                .collect();
            let s: Secret = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": cf.gateway_keys_secret, "namespace": cf.key_namespace,
                             "labels": {"app.kubernetes.io/managed-by": "edgebind"}},
                "type": "Opaque",
                "data": data,
            }))
            .map_err(kube::Error::SerdeError)?;
            match api.create(&PostParams::default(), &s).await {
                Ok(_) => Ok(()),
                // Another binding created it meanwhile: add our entries to it.
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    merge_data(&api, &cf.gateway_keys_secret, &entries).await
                }
                Err(e) => Err(e),
            }
        }
        (true, _) => merge_data(&api, &cf.gateway_keys_secret, &entries).await,
    }
}

/// The `<keyid>.binding` entries missing from the gateways' Secret (its entry names are
/// `present`): keys published before keys named their binding. A key is matched to the binding
/// whose status records it (current, pending or retiring) and only within that binding's
/// namespace, so an entry is never guessed.
pub(crate) fn missing_binding_entries(
    present: &BTreeMap<String, String>,
    bindings: &[EdgeBinding],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for b in bindings {
        let Some(st) = &b.status else { continue };
        let ns = b.namespace().unwrap_or_default();
        for id in [&st.current_key_id, &st.pending_key_id, &st.retiring_key_id]
            .into_iter()
            .flatten()
        {
            let entry = format!("{id}.binding");
            if present.contains_key(&format!("{id}.pub"))
                && present.get(&format!("{id}.namespace")) == Some(&ns)
                && !present.contains_key(&entry)
            {
                out.push((entry, b.name_any()));
            }
        }
    }
    out
}

/// Once at start: records the binding of every trusted key published before keys named it, so
/// the gateways apply those bindings' volume defaults without waiting for a rotation. A failure
/// is logged; such keys keep the gateways' fallback until they rotate.
pub(crate) async fn backfill_binding_entries(client: &kube::Client, key_ns: &str, secret: &str) {
    let outcome = async {
        let api: Api<Secret> = Api::namespaced(client.clone(), key_ns);
        let Some(s) = api.get_opt(secret).await? else {
            return Ok(0);
        };
        let present: BTreeMap<String, String> = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect();
        let bindings = Api::<EdgeBinding>::all(client.clone())
            .list(&Default::default())
            .await?;
        let missing = missing_binding_entries(&present, &bindings.items);
        if !missing.is_empty() {
            let changes: Vec<(&str, Option<&str>)> = missing
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                .collect();
            merge_data(&api, secret, &changes).await?;
        }
        Ok::<usize, kube::Error>(missing.len())
    }
    .await;
    match outcome {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            entries = n,
            "recorded the binding of signing keys published before"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot record the bindings of older signing keys"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_a_binding_records_in_its_own_namespace_get_an_entry() {
        let binding = |ns: &str, name: &str, current: &str, retiring: Option<&str>| {
            let mut b: EdgeBinding = serde_json::from_value(json!({
                "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeBinding",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"accountRef": "a", "zoneId": "023e105f4ecef8ad9ca31a8372d0c353",
                         "routes": ["x.example.com/*"], "scriptName": "s", "gatewayUrl": "https://gw"}
            }))
            .expect("binding");
            b.status = Some(crate::crd::EdgeBindingStatus {
                current_key_id: Some(current.into()),
                retiring_key_id: retiring.map(str::to_string),
                ..Default::default()
            });
            b
        };
        let present: BTreeMap<String, String> = [
            ("old.pub", "k"),
            ("old.namespace", "team-a"),
            ("older.pub", "k"),
            ("older.namespace", "team-a"),
            ("new.pub", "k"),
            ("new.namespace", "team-a"),
            ("new.binding", "api"),
            ("elsewhere.pub", "k"),
            ("elsewhere.namespace", "team-b"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let bindings = [
            binding("team-a", "api", "old", Some("older")),
            binding("team-a", "web", "new", None),
            // Records a key scoped to another namespace: never matched.
            binding("team-a", "odd", "elsewhere", None),
            binding("team-a", "gone-key", "unpublished", None),
        ];
        assert_eq!(
            missing_binding_entries(&present, &bindings),
            vec![
                ("old.binding".to_string(), "api".to_string()),
                ("older.binding".to_string(), "api".to_string()),
            ]
        );
    }
}
