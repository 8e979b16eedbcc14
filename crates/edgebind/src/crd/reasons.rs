//! Every condition and event reason edgebind writes, one enum per kind. The variant name is
//! the string in `status.conditions[].reason` (and in events), so renaming one is an API change.
//! The class says which reasons are progress steps (no event) and which are terminal (the
//! object's phase is `Failed` until a person acts).

use super::conditions::reasons;

reasons! {
    /// LinstorBackend.
    pub enum BackendReason {
        /// `GET /v1/controller/version` answered.
        Connected,
        /// The spec or a referenced Secret cannot be used.
        InvalidConfig: terminal,
        /// LINSTOR refused the credentials.
        Unauthorized,
        /// No URL answered.
        Unreachable,
        /// The server is older than the oldest REST API edgebind supports.
        Unsupported: terminal,
        /// Any other LINSTOR error.
        LinstorError,
    }
}

reasons! {
    /// EdgeVolume.
    pub enum VolumeReason {
        Creating: progress,
        Placing: progress,
        Syncing: progress,
        /// Usable, growing to the new size.
        Resizing,
        Ready,
        /// A LINSTOR object of that name that edgebind does not own (or another owner's).
        Conflict: terminal,
        /// Only a spec change can fix it.
        InvalidSpec: terminal,
        BackendNotReady,
        WaitingForSnapshot: progress,
        LinstorUnreachable,
        Unauthorized,
        NotEnoughNodes,
        /// The spec names a resource group LINSTOR does not have.
        ResourceGroupNotFound: terminal,
        /// The resource group sets no `select_filter.place_count`: LINSTOR's spawn and
        /// autoplace place no replica for it.
        ResourceGroupPlacesNothing: terminal,
        LinstorError,
        /// Deletion waits for something edgebind must not delete (a snapshot it did not make).
        DeletionBlocked,
        /// A PersistentVolume of the name edgebind would give this volume's PV, not made by
        /// edgebind for it.
        PersistentVolumeConflict: terminal,
        /// Deletion waits until no claim is bound to the volume's PersistentVolume.
        PersistentVolumeBound,
        // Degraded
        NodeOffline,
        ReplicaNotUpToDate,
        /// A replica is evicted, evacuating or deactivated: it exists but serves no data.
        ReplicaInactive,
        TooFewReplicas,
        AsExpected,
        // Progressing
        Applying: progress,
        Converged,
        Retrying,
        WaitingForSpecChange,
        /// Fewer replicas than declared and no LINSTOR node can take one now: edgebind places
        /// the rest when a node comes (back) online.
        WaitingForNodes,
        // Events
        Applied,
        Deleted,
        Released,
        BackendGone,
        /// The edge request that created or changed the volume reached Ready (with its stage
        /// timings).
        RequestCompleted,
        /// The edge request that created or changed the volume failed (with its stage timings).
        RequestFailed,
    }
}

reasons! {
    /// EdgeSnapshot.
    pub enum SnapshotReason {
        WaitingForVolume: progress,
        Creating: progress,
        Ready,
        /// A LINSTOR snapshot of that name that edgebind does not own.
        Conflict: terminal,
        /// LINSTOR reports the snapshot failed; it will not recover.
        Failed: terminal,
        LinstorError,
        // Events
        /// The edge request that created the snapshot: ready to use (with its stage timings).
        RequestCompleted,
        /// The edge request that created the snapshot failed (with its stage timings).
        RequestFailed,
    }
}

reasons! {
    /// CloudflareAccount (beside the Cloudflare client's [`CloudflareReason`]).
    pub enum AccountReason {
        Verified,
        /// The spec or its token Secret cannot be used.
        InvalidConfig: terminal,
        InvalidToken: terminal,
        TokenDisabled: terminal,
        TokenExpired: terminal,
        // TunnelReady condition
        /// cloudflared holds at least one connection.
        TunnelConnected,
        /// The tunnel exists; no cloudflared is connected (yet).
        TunnelDisconnected: progress,
        /// No origin for the tunnel: neither `spec.tunnel.service` nor `--gateway-service`.
        NoGatewayService: terminal,
        /// `spec.tunnel` was removed, or the account is being deleted: the tunnel is being deleted.
        TunnelDeleting: progress,
        /// The account is being deleted and EdgeBindings still publish through it.
        InUse: progress,
        // WorkersVpcReady condition
        /// The gateway is registered as a Workers VPC service and matches the spec.
        VpcServiceRegistered,
        // Failed Cloudflare calls (from [`CloudflareReason`])
        CloudflareUnreachable,
        Unauthorized,
        RateLimited,
        CloudflareUnavailable,
        CloudflareError,
        ShuttingDown,
    }
}

reasons! {
    /// A Cloudflare call that failed, for the account or binding it concerns.
    pub enum CloudflareReason {
        CloudflareUnreachable,
        Unauthorized,
        RateLimited,
        CloudflareUnavailable,
        CloudflareError,
        ShuttingDown,
    }
}

reasons! {
    /// EdgeBinding (beside [`CloudflareReason`] for failed calls).
    pub enum BindingReason {
        AccountNotReady,
        /// `spec.volumeDefaults.backendRef` names no LinstorBackend.
        BackendNotFound,
        InvalidConfig: terminal,
        WaitingForSigningKey: progress,
        SigningKeyMissing: terminal,
        /// A Worker of that name that edgebind did not create.
        ScriptConflict: terminal,
        Published,
        RouteConflict: terminal,
        /// The account's tunnel does not exist yet, or the account has none.
        TunnelNotReady,
        /// A DNS record for `tunnelHostname` that edgebind did not create.
        DnsConflict: terminal,
        /// The token verifies but may not act on this binding's zone or Worker (401/403,
        /// code 10000): this binding waits for the permission; the account and its other
        /// bindings go on.
        PermissionDenied,
        /// A gradual deployment (versions sharing traffic) is in progress; edgebind waits
        /// for it to finish instead of replacing it.
        GradualDeployment,
        /// `workersVpc`: the account has no Workers VPC service (yet), or no `spec.tunnel.workersVpc`.
        VpcServiceNotReady,
        // RouteConflict condition
        NoConflict,
        RouteOwnedElsewhere,
        // Degraded
        AsExpected,
        // Events
        AccountGone,
        Unpublished,
        VersionDeployed,
        /// Deletion left secrets on a kept Worker: Cloudflare refuses secret edits while its
        /// latest version is not deployed (10215).
        SecretsLeft,
        // Failed Cloudflare calls (from [`CloudflareReason`])
        CloudflareUnreachable,
        Unauthorized,
        RateLimited,
        CloudflareUnavailable,
        CloudflareError,
        ShuttingDown,
    }
}

reasons! {
    /// IdentityIssuer.
    pub enum IssuerReason {
        JwksFetched,
        DiscoveryFailed,
        InvalidJwks,
        JwksUnreachable,
    }
}

reasons! {
    /// VolumeAccessPolicy.
    pub enum PolicyReason {
        Compiled,
        UnknownIssuer: terminal,
        InvalidSpec: terminal,
    }
}

macro_rules! from_cloudflare {
    ($to:ident) => {
        impl From<CloudflareReason> for $to {
            fn from(r: CloudflareReason) -> Self {
                match r {
                    CloudflareReason::CloudflareUnreachable => Self::CloudflareUnreachable,
                    CloudflareReason::Unauthorized => Self::Unauthorized,
                    CloudflareReason::RateLimited => Self::RateLimited,
                    CloudflareReason::CloudflareUnavailable => Self::CloudflareUnavailable,
                    CloudflareReason::CloudflareError => Self::CloudflareError,
                    CloudflareReason::ShuttingDown => Self::ShuttingDown,
                }
            }
        }
    };
}
from_cloudflare!(AccountReason);
from_cloudflare!(BindingReason);

#[cfg(test)]
mod tests {
    use super::super::conditions::Reason;
    use super::*;

    fn round_trips<R: Reason>(all: &[R]) {
        for r in all {
            assert_eq!(R::parse(r.as_str()), Some(*r), "{r:?}");
            assert!(
                r.as_str()
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_uppercase())
            );
        }
        assert_eq!(R::parse("NoSuchReason"), None);
    }

    #[test]
    fn every_reason_parses_back_from_its_string() {
        round_trips(BackendReason::ALL);
        round_trips(VolumeReason::ALL);
        round_trips(SnapshotReason::ALL);
        round_trips(AccountReason::ALL);
        round_trips(CloudflareReason::ALL);
        round_trips(BindingReason::ALL);
        round_trips(IssuerReason::ALL);
        round_trips(PolicyReason::ALL);
    }

    #[test]
    fn cloudflare_failures_keep_their_string_on_accounts_and_bindings() {
        for r in CloudflareReason::ALL {
            assert_eq!(AccountReason::from(*r).as_str(), r.as_str());
            assert_eq!(BindingReason::from(*r).as_str(), r.as_str());
        }
    }
}
