//! The DNS record that sends a binding's `tunnelHostname` to its account's tunnel: a proxied
//! CNAME to `<tunnel id>.cfargotunnel.com` (reference §11; the name does not resolve publicly,
//! so the record must be proxied). Only the record recorded in status is ever changed or
//! deleted; a record of that name that edgebind did not create is a conflict, left alone.

use super::super::Context;
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

/// The comment that marks the record for people (Free plans allow 100 characters).
fn comment(b: &EdgeBinding) -> String {
    let c = format!(
        "edgebind EdgeBinding {}/{}",
        b.namespace().unwrap_or_default(),
        b.name_any()
    );
    c.chars().take(100).collect()
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
    let ours = st.dns_record_id.clone();
    if let Some(r) = records.iter().find(|r| Some(&r.id) == ours.as_ref()) {
        if r.type_ == "CNAME" && r.content.eq_ignore_ascii_case(&target) && r.proxied {
            return Ok(());
        }
        // Ours, but pointing elsewhere (the tunnel was replaced, or someone edited it).
        cf.delete_dns_record(zone, &r.id)
            .await
            .map_err(Problem::Cloudflare)?;
    }
    st.dns_record_id = None;
    if let Some(r) = records.iter().find(|r| Some(&r.id) != ours.as_ref()) {
        return Err(Problem::Conflict(format!(
            "the DNS record {} {} (id {}) was not created by edgebind; remove it or choose another tunnelHostname",
            r.type_, r.name, r.id
        )));
    }
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

/// Deletes the record edgebind created (gone already is fine).
pub(crate) async fn remove(
    cf: &CfClient,
    b: &EdgeBinding,
    st: &EdgeBindingStatus,
) -> Result<(), CfError> {
    let Some(id) = &st.dns_record_id else {
        return Ok(());
    };
    match cf.delete_dns_record(&b.spec.zone_id, id).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}
