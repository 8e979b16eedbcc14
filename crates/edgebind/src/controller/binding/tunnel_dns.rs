//! The DNS record that sends a binding's `tunnelHostname` to its account's tunnel: a proxied
//! CNAME to `<tunnel id>.cfargotunnel.com` (reference §11; the name does not resolve publicly,
//! so the record must be proxied). Only edgebind's own record is ever changed or deleted: the
//! one recorded in status, or one whose comment carries this binding's uid (status can be lost
//! or read stale, e.g. a reconcile from a cache that has not seen the last status write yet).
//! A record of that name that edgebind did not create is a conflict, left alone.

use super::super::Context;
use crate::cloudflare::types::DnsRecord;
use crate::cloudflare::{CfClient, CfError};
use crate::crd::account::CloudflareAccount;
use crate::crd::binding::{EdgeBinding, EdgeBindingStatus};
use crate::crd::reasons::BindingReason;
use kube::ResourceExt;
use kube::api::Api;

/// Why the record is not in place.
pub(crate) enum Problem {
    /// The account has no tunnel (yet), or no `spec.tunnel`.
    NotReady(String),
    /// Someone else's record holds the name.
    Conflict(String),
    Cloudflare(CfError),
}

impl Problem {
    pub(crate) fn reason(&self) -> BindingReason {
        match self {
            Problem::NotReady(_) => BindingReason::TunnelNotReady,
            Problem::Conflict(_) => BindingReason::DnsConflict,
            Problem::Cloudflare(e) => e.reason().into(),
        }
    }
    pub(crate) fn message(&self) -> String {
        match self {
            Problem::NotReady(m) | Problem::Conflict(m) => m.clone(),
            Problem::Cloudflare(e) => e.to_string(),
        }
    }
}

/// The start of the comment of the binding's record: edgebind and the binding's uid. Only
/// zone DNS editors can write comments; tenants of the cluster cannot.
fn marker(b: &EdgeBinding) -> String {
    format!("edgebind {} ", b.uid().unwrap_or_default())
}

/// The comment that marks the record, for edgebind and for people (Free plans allow 100
/// characters: the marker is 46, the rest names the binding as far as it fits).
fn comment(b: &EdgeBinding) -> String {
    let c = format!(
        "{}EdgeBinding {}/{}",
        marker(b),
        b.namespace().unwrap_or_default(),
        b.name_any()
    );
    c.chars().take(100).collect()
}

/// Whether `r` is this binding's record: recorded in status, or marked with its uid.
fn is_ours(b: &EdgeBinding, recorded: Option<&String>, r: &DnsRecord) -> bool {
    Some(&r.id) == recorded
        || (b.uid().is_some()
            && r.comment
                .as_deref()
                .is_some_and(|c| c.starts_with(&marker(b))))
}

/// The account's tunnel id, from its status.
async fn tunnel_id(ctx: &Context, b: &EdgeBinding) -> Result<String, Problem> {
    let name = &b.spec.account_ref;
    let a = Api::<CloudflareAccount>::all(ctx.client.clone())
        .get_opt(name)
        .await
        .map_err(|e| Problem::NotReady(format!("cannot read CloudflareAccount {name}: {e}")))?
        .ok_or_else(|| Problem::NotReady(format!("CloudflareAccount {name} does not exist")))?;
    if a.spec.tunnel.is_none() {
        return Err(Problem::NotReady(format!(
            "tunnelHostname needs a tunnel: set spec.tunnel on CloudflareAccount {name}"
        )));
    }
    a.status
        .and_then(|s| s.tunnel)
        .map(|t| t.id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Problem::NotReady(format!("CloudflareAccount {name} has no tunnel yet")))
}

/// Makes the record exist and point at the tunnel; records its id in `st`.
pub(crate) async fn ensure(
    ctx: &Context,
    cf: &CfClient,
    b: &EdgeBinding,
    st: &mut EdgeBindingStatus,
) -> Result<(), Problem> {
    let host = b.spec.tunnel_hostname.to_ascii_lowercase();
    let target = format!("{}.cfargotunnel.com", tunnel_id(ctx, b).await?);
    let zone = &b.spec.zone_id;
    let records = cf
        .find_dns_records(zone, &host)
        .await
        .map_err(Problem::Cloudflare)?;
    let recorded = st.dns_record_id.clone();
    let (ours, theirs): (Vec<_>, Vec<_>) = records
        .iter()
        .partition(|r| is_ours(b, recorded.as_ref(), r));
    if let Some(r) = theirs.first() {
        return Err(Problem::Conflict(format!(
            "the DNS record {} {} (id {}) was not created by edgebind; remove it or choose another tunnelHostname",
            r.type_, r.name, r.id
        )));
    }
    if let Some(r) = ours.first() {
        if r.type_ == "CNAME" && r.content.eq_ignore_ascii_case(&target) && r.proxied {
            st.dns_record_id = Some(r.id.clone());
            return Ok(());
        }
        // Ours, but pointing elsewhere (the tunnel was replaced, or someone edited it).
        cf.delete_dns_record(zone, &r.id)
            .await
            .map_err(Problem::Cloudflare)?;
    }
    st.dns_record_id = None;
    match cf.create_cname(zone, &host, &target, &comment(b)).await {
        Ok(r) => {
            tracing::info!(host = %host, record = %r.id, "created the tunnel CNAME");
            st.dns_record_id = Some(r.id);
            Ok(())
        }
        Err(e) if e.is_dns_name_taken() => Err(Problem::Conflict(format!(
            "a DNS record named {host} appeared that edgebind did not create; remove it or choose another tunnelHostname"
        ))),
        Err(e) => Err(Problem::Cloudflare(e)),
    }
}

/// Deletes the record edgebind created (gone already is fine), found by status or by its mark.
pub(crate) async fn remove(
    cf: &CfClient,
    b: &EdgeBinding,
    st: &EdgeBindingStatus,
) -> Result<(), CfError> {
    let mut ids: Vec<String> = st.dns_record_id.iter().cloned().collect();
    if !b.spec.tunnel_hostname.is_empty() {
        let host = b.spec.tunnel_hostname.to_ascii_lowercase();
        for r in cf.find_dns_records(&b.spec.zone_id, &host).await? {
            if is_ours(b, None, &r) && !ids.contains(&r.id) {
                ids.push(r.id);
            }
        }
    }
    for id in ids {
        match cf.delete_dns_record(&b.spec.zone_id, &id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::binding::EdgeBindingSpec;

    fn binding(uid: Option<&str>) -> EdgeBinding {
        let mut b = EdgeBinding::new(
            "api",
            serde_json::from_value::<EdgeBindingSpec>(serde_json::json!({
                "accountRef": "acme", "zoneId": "z", "routes": ["a.example.com/*"],
                "scriptName": "s", "tunnelHostname": "gw.example.com"
            }))
            .expect("spec"),
        );
        b.metadata.namespace = Some("team-a".into());
        b.metadata.uid = uid.map(str::to_string);
        b
    }

    fn record(id: &str, comment: Option<&str>) -> DnsRecord {
        DnsRecord {
            id: id.into(),
            name: "gw.example.com".into(),
            type_: "CNAME".into(),
            content: "t.cfargotunnel.com".into(),
            proxied: true,
            comment: comment.map(str::to_string),
        }
    }

    #[test]
    fn a_record_is_ours_by_status_or_by_the_uid_in_its_comment() {
        let uid = "0b9d3c57-2d5e-4a53-9d35-3f1b8d0f6a11";
        let b = binding(Some(uid));
        let c = comment(&b);
        assert!(c.len() <= 100 && c.starts_with(&format!("edgebind {uid} ")));
        // Status lost (or read stale): the comment still says whose it is.
        assert!(is_ours(&b, None, &record("r1", Some(&c))));
        assert!(is_ours(&b, Some(&"r1".into()), &record("r1", None)));
        // Another binding's record, a person's record, a forged prefix without the uid.
        let other = comment(&binding(Some("7c1e0e1a-0000-4000-8000-000000000000")));
        assert!(!is_ours(&b, None, &record("r2", Some(&other))));
        assert!(!is_ours(&b, None, &record("r3", Some("added by hand"))));
        assert!(!is_ours(
            &b,
            None,
            &record("r4", Some("edgebind  EdgeBinding team-a/api"))
        ));
        // An object without a uid (never the case on a server) owns nothing by comment.
        let none = binding(None);
        assert!(!is_ours(&none, None, &record("r5", Some(&comment(&none)))));
        // Long names are cut to Cloudflare's 100 characters, the marker kept whole.
        let mut long = binding(Some(uid));
        long.metadata.name = Some("x".repeat(200));
        assert_eq!(comment(&long).chars().count(), 100);
        assert!(comment(&long).starts_with(&marker(&long)));
    }
}
