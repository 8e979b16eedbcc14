//! mTLS in front of a plain-HTTP simulator: a test CA, certificates it signs, and a TCP proxy
//! that terminates TLS (requiring a client certificate from that CA, as LINSTOR's HTTPS port
//! does when Piraeus configures API TLS) and forwards the bytes to the simulator.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::task::JoinHandle;

/// A test certificate authority.
pub struct Pki {
    pub ca_pem: String,
    pub ca_der: CertificateDer<'static>,
    pub issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        let cert = params.self_signed(&key).expect("CA cert");
        Pki {
            ca_pem: cert.pem(),
            ca_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate for `cn` and the SANs: (PEM cert, PEM PKCS#8 key, DER cert).
    pub fn leaf(&self, cn: &str, sans: &[&str]) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

impl Pki {
    /// A TLS acceptor for 127.0.0.1 with a server certificate from this CA that requires a
    /// client certificate from it too.
    pub fn mtls_acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("CA into roots");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let server_key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("server params");
        let server_cert = params
            .signed_by(&server_key, &self.issuer)
            .expect("server cert");
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![server_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .expect("server config");
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
    }
}

/// Listens on 127.0.0.1 with a server certificate from `pki`, requires a client certificate
/// from `pki`, and pipes each connection to `upstream`. Returns the `https://` origin and the
/// task (abort it to stop).
pub async fn mtls_front(pki: &Pki, upstream: SocketAddr) -> (String, JoinHandle<()>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let acceptor = pki.mtls_acceptor();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = format!("https://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (origin, task)
}
