//! mTLS to LINSTOR: the client presents its certificate, verifies the controller against the
//! given CA, and picks up a rotated certificate from disk without being rebuilt.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgebind::linstor::tls::TlsSource;
use edgebind::linstor::{ClientConfig, LinstorClient, LinstorError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::tls::Pki;

/// A controller stand-in that requires a client certificate from the CA, records which one each
/// connection presented, and answers `GET /v1/controller/version`.
async fn mtls_server(pki: &Pki) -> (u16, Arc<Mutex<Vec<Vec<u8>>>>) {
    let acceptor = pki.mtls_acceptor();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Some(c) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                    seen.lock().unwrap().push(c.to_vec());
                }
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"version":"1.33.1","git_hash":"x","rest_api_version":"1.27.0"}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, seen)
}

fn client(port: u16, tls: TlsSource) -> LinstorClient {
    LinstorClient::new(ClientConfig {
        urls: vec![url::Url::parse(&format!("https://127.0.0.1:{port}")).unwrap()],
        tls: Some(tls),
        bearer_token: None,
        budget: Default::default(),
        timeouts: Default::default(),
    })
    .expect("client builds")
}

#[tokio::test]
async fn client_certificate_is_presented_and_rotated_files_are_picked_up() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = Pki::new();
    let (port, seen) = mtls_server(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = (
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        dir.path().join("ca.crt"),
    );
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let (a_pem, a_key, a_der) = pki.leaf("edgebind-a", &["edgebind"]);
    std::fs::write(&cert, &a_pem).unwrap();
    std::fs::write(&key, &a_key).unwrap();
    let c = client(
        port,
        TlsSource::Files {
            cert: Some(cert.clone()),
            key: Some(key.clone()),
            ca: Some(ca.clone()),
        },
    );

    let (v, _) = c.probe().await.expect("mTLS handshake and version probe");
    assert_eq!(v.rest_api_version, "1.27.0");
    assert_eq!(
        seen.lock().unwrap().last(),
        Some(&a_der),
        "certificate A presented"
    );

    // cert-manager renews the certificate: new files, same client.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (b_pem, b_key, b_der) = pki.leaf("edgebind-b", &["edgebind"]);
    std::fs::write(&cert, &b_pem).unwrap();
    std::fs::write(&key, &b_key).unwrap();
    c.reset_probe().await;
    c.probe().await.expect("probe after rotation");
    assert_eq!(
        seen.lock().unwrap().last(),
        Some(&b_der),
        "the rotated certificate B is presented"
    );
}

#[tokio::test]
async fn without_a_client_certificate_or_with_the_wrong_ca_the_call_fails_cleanly() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = Pki::new();
    let (port, seen) = mtls_server(&pki).await;
    // No client certificate: the server refuses the handshake.
    let c = client(
        port,
        TlsSource::Pem {
            cert: None,
            key: None,
            ca: Some(pki.ca_pem.clone().into_bytes()),
        },
    );
    let err = c
        .probe()
        .await
        .expect_err("refused without a client certificate");
    assert!(matches!(err, LinstorError::Unreachable { .. }), "{err}");
    // A CA that did not sign the server: the client refuses the server.
    let other = Pki::new();
    let (a_pem, a_key, _) = pki.leaf("edgebind-a", &["edgebind"]);
    let c = client(
        port,
        TlsSource::Pem {
            cert: Some(a_pem.into_bytes()),
            key: Some(a_key.into_bytes()),
            ca: Some(other.ca_pem.into_bytes()),
        },
    );
    let err = c.probe().await.expect_err("server not trusted");
    assert!(matches!(err, LinstorError::Unreachable { .. }), "{err}");
    assert!(seen.lock().unwrap().is_empty(), "no request was served");
    // Half a key pair is a configuration error, found before any connection.
    let half = LinstorClient::new(ClientConfig {
        urls: vec![url::Url::parse(&format!("https://127.0.0.1:{port}")).unwrap()],
        tls: Some(TlsSource::Pem {
            cert: Some(b"x".to_vec()),
            key: None,
            ca: None,
        }),
        bearer_token: None,
        budget: Default::default(),
        timeouts: Default::default(),
    });
    assert!(half.is_err());
}
