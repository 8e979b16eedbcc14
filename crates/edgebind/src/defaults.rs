//! Operator-wide defaults, written once. The kustomize base, the examples and the install
//! commands in README.md and deploy/README.md use the same namespace; `tests/python/test_deploy.py`
//! fails if they drift apart. (The Helm chart installs into its release namespace.)

/// Namespace of the operator, its Lease and the gateway keys Secret, unless `POD_NAMESPACE` says.
pub(crate) const NAMESPACE: &str = "edgebind-system";

/// Secret in the operator namespace holding the Workers' public keys that the gateways trust.
pub(crate) const GATEWAY_KEYS_SECRET: &str = "edgebind-gateway-keys";

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn controller_and_gateway_fall_back_to_the_same_namespace_and_secret() {
        if std::env::var_os("POD_NAMESPACE").is_some() {
            return; // the flags read it first
        }
        let parse = |sub| Cli::try_parse_from(["edgebind", sub]).unwrap().command;
        let (Command::Controller(c), Command::Gateway(g)) = (parse("controller"), parse("gateway"))
        else {
            unreachable!()
        };
        let cf = crate::controller::CloudflareSettings::default();
        assert_eq!(c.lease_namespace, super::NAMESPACE);
        assert_eq!(g.keys_namespace, super::NAMESPACE);
        assert_eq!(cf.key_namespace, super::NAMESPACE);
        assert_eq!(g.keys_secret, super::GATEWAY_KEYS_SECRET);
        assert_eq!(cf.gateway_keys_secret, super::GATEWAY_KEYS_SECRET);
        let from_flags = crate::controller_config(&c).cloudflare;
        assert_eq!(from_flags.key_namespace, super::NAMESPACE);
        assert_eq!(from_flags.gateway_keys_secret, super::GATEWAY_KEYS_SECRET);
    }

    /// `gateway.keysSecretName` reaches both components (the chart sets the variable on both).
    #[test]
    fn a_non_default_key_secret_name_reaches_the_controller_and_the_gateway() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap().command;
        let (Command::Controller(c), Command::Gateway(g)) = (
            parse(&[
                "edgebind",
                "controller",
                "--gateway-keys-secret",
                "keys-x",
                "--lease-namespace",
                "ops",
            ]),
            parse(&[
                "edgebind",
                "gateway",
                "--keys-secret",
                "keys-x",
                "--keys-namespace",
                "ops",
            ]),
        ) else {
            unreachable!()
        };
        let cf = crate::controller_config(&c).cloudflare;
        assert_eq!(
            (cf.gateway_keys_secret.as_str(), cf.key_namespace.as_str()),
            ("keys-x", "ops")
        );
        assert_eq!(
            (g.keys_secret.as_str(), g.keys_namespace.as_str()),
            ("keys-x", "ops")
        );
    }
}
