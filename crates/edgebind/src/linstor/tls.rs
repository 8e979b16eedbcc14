//! TLS for LINSTOR: the controller's CA and an optional client certificate (mTLS).
//!
//! The client certificate is resolved at every handshake from its source, so a rotated
//! certificate (cert-manager renewing the Secret, or new files on disk) is used without a
//! restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Where TLS material comes from.
#[derive(Clone)]
pub enum TlsSource {
    /// PEM bytes (from a Kubernetes Secret: `tls.crt`, `tls.key`, `ca.crt`). The controller
    /// rebuilds the client when the Secret changes.
    Pem {
        cert: Option<Vec<u8>>,
        key: Option<Vec<u8>>,
        ca: Option<Vec<u8>>,
    },
    /// Files, re-read when their modification time changes.
    Files {
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        ca: Option<PathBuf>,
    },
}

impl std::fmt::Debug for TlsSource {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsSource::Pem { cert, key, ca } => f
                .debug_struct("Pem")
                .field("cert", &cert.is_some())
                .field("key", &key.as_ref().map(|_| "<redacted>"))
                .field("ca", &ca.is_some())
                .finish(),
            TlsSource::Files { cert, key, ca } => f
                .debug_struct("Files")
                .field("cert", cert)
                .field("key", key)
                .field("ca", ca)
                .finish(),
        }
    }
}

fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let out: Result<Vec<_>, _> = rustls_pemfile::certs(&mut &pem[..]).collect();
    let out = out.map_err(|e| format!("bad PEM certificate: {e}"))?;
    if out.is_empty() {
        return Err("no certificate found in PEM".into());
    }
    Ok(out)
}

fn key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| format!("bad PEM private key: {e}"))?
        .ok_or_else(|| "no private key found in PEM".to_string())
}

fn certified(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let provider = rustls::crypto::ring::default_provider();
    let chain = certs(cert_pem)?;
    let key = provider
        .key_provider
        .load_private_key(key(key_pem)?)
        .map_err(|e| format!("unusable private key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, key)))
}

/// Resolves the client certificate, re-reading files when they change.
#[derive(Debug)]
struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    cached: Mutex<Option<(SystemTime, SystemTime, Arc<CertifiedKey>)>>,
}

impl ReloadingCert {
    fn load(&self) -> Option<Arc<CertifiedKey>> {
        let mtime = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let (cm, km) = (mtime(&self.cert)?, mtime(&self.key)?);
        let mut cache = self.cached.lock().ok()?;
        if let Some((c, k, ck)) = cache.as_ref()
            && *c == cm
            && *k == km
        {
            return Some(ck.clone());
        }
        let loaded = std::fs::read(&self.cert)
            .ok()
            .zip(std::fs::read(&self.key).ok())
            .and_then(|(c, k)| match certified(&c, &k) {
                Ok(ck) => Some(ck),
                Err(e) => {
                    tracing::warn!(path = %self.cert.display(), error = %e, "cannot load LINSTOR client certificate");
                    None
                }
            });
        match loaded {
            Some(ck) => {
                *cache = Some((cm, km, ck.clone()));
                Some(ck)
            }
            // A half-written rotation: keep using the previous pair.
            None => cache.as_ref().map(|(_, _, ck)| ck.clone()),
        }
    }
}

impl ResolvesClientCert for ReloadingCert {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.load()
    }
    fn has_certs(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesClientCert for FixedCert {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// Builds a rustls client configuration (ring provider, the same kube uses).
pub fn client_config(source: Option<&TlsSource>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let ca_pem = match source {
        Some(TlsSource::Pem { ca: Some(ca), .. }) => Some(ca.clone()),
        Some(TlsSource::Files { ca: Some(p), .. }) => Some(
            std::fs::read(p).map_err(|e| format!("cannot read CA file {}: {e}", p.display()))?,
        ),
        _ => None,
    };
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for c in certs(&pem)? {
                roots
                    .add(c)
                    .map_err(|e| format!("bad CA certificate: {e}"))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = builder.with_root_certificates(roots);
    let config = match source {
        Some(TlsSource::Pem {
            cert: Some(c),
            key: Some(k),
            ..
        }) => builder.with_client_cert_resolver(Arc::new(FixedCert(certified(c, k)?))),
        Some(TlsSource::Files {
            cert: Some(c),
            key: Some(k),
            ..
        }) => {
            let r = ReloadingCert {
                cert: c.clone(),
                key: k.clone(),
                cached: Mutex::new(None),
            };
            if r.load().is_none() {
                return Err(format!(
                    "cannot load client certificate {} / {}",
                    c.display(),
                    k.display()
                ));
            }
            builder.with_client_cert_resolver(Arc::new(r))
        }
        Some(TlsSource::Pem {
            cert: Some(_),
            key: None,
            ..
        })
        | Some(TlsSource::Pem {
            cert: None,
            key: Some(_),
            ..
        }) => {
            return Err("client TLS needs both tls.crt and tls.key".into());
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = config;
    // No session resumption: a resumed session carries the identity of the certificate it was
    // made with, so a rotated client certificate would not be presented until tickets expire.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}
