//! The LINSTOR client's list reads: answers are decoded element by element as they arrive
//! (never held whole), a read cut off mid-answer is retried from a fresh accumulator, and an
//! answer that is not one JSON array is a decode error, not retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use edgebind::linstor::{ClientConfig, LinstorClient, LinstorError};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One scripted answer: the head, then body pieces written with a pause between them (so the
/// client receives them as separate chunks); `cut` closes the connection before the end.
struct Answer {
    status: &'static str,
    pieces: Vec<&'static str>,
    cut: bool,
}

/// A controller stand-in answering the n-th request (one per connection) with `answers[n]`.
async fn scripted(answers: Vec<Answer>) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let answers = Arc::new(answers);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let Some(a) = answers.get(n) else { return };
                let head = format!(
                    "HTTP/1.1 {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                    a.status
                );
                let _ = tcp.write_all(head.as_bytes()).await;
                for p in &a.pieces {
                    let chunk = format!("{:x}\r\n{p}\r\n", p.len());
                    let _ = tcp.write_all(chunk.as_bytes()).await;
                    let _ = tcp.flush().await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if !a.cut {
                    let _ = tcp.write_all(b"0\r\n\r\n").await;
                }
                let _ = tcp.shutdown().await;
            });
        }
    });
    (port, served)
}

fn client(port: u16) -> LinstorClient {
    LinstorClient::new(ClientConfig {
        urls: vec![url::Url::parse(&format!("http://127.0.0.1:{port}")).expect("url")],
        tls: None,
        bearer_token: None,
        budget: Default::default(),
        timeouts: Default::default(),
    })
    .expect("client builds")
}

#[tokio::test]
async fn a_list_is_decoded_as_it_arrives_and_a_cut_answer_is_read_again_from_scratch() {
    let whole = vec![
        r#" [{"name": "a", "flags": ["X"]}, {"na"#,
        r#"me": "b]},\"{", "flags": []"#,
        r#"}, {"name": "c"}]"#,
    ];
    let (port, served) = scripted(vec![
        // Cut off after the first element: that element must not survive into the retry.
        Answer {
            status: "200 OK",
            pieces: whole[..2].to_vec(),
            cut: true,
        },
        Answer {
            status: "200 OK",
            pieces: whole.clone(),
            cut: false,
        },
    ])
    .await;
    let c = client(port);
    let mut starts = 0;
    let got = c
        .list_each(
            "/v1/resource-definitions",
            &[],
            || {
                starts += 1;
                Vec::new()
            },
            |v: &mut Vec<Value>, e: Value| v.push(e),
        )
        .await
        .expect("the second attempt reads the whole list");
    assert_eq!(
        got,
        vec![
            json!({"name": "a", "flags": ["X"]}),
            json!({"name": "b]},\"{", "flags": []}),
            json!({"name": "c"}),
        ]
    );
    assert_eq!(starts, 2, "each attempt starts a fresh accumulator");
    assert_eq!(served.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_answer_that_is_not_one_array_is_a_decode_error_and_not_retried() {
    for body in [
        r#"[{"name": "a"} {"name": "b"}]"#,
        r#"{"name": "a"}"#,
        r#"[{"name": "a"}"#,
        r#"[{"name": 1}]"#,
    ] {
        let (port, served) = scripted(vec![
            Answer {
                status: "200 OK",
                pieces: vec![body],
                cut: false,
            },
            Answer {
                status: "200 OK",
                pieces: vec!["[]"],
                cut: false,
            },
        ])
        .await;
        let r = client(port)
            .list::<Named>("/v1/resource-definitions", &[])
            .await;
        assert!(
            matches!(&r, Err(LinstorError::Decode { what, .. }) if what == "GET /v1/resource-definitions"),
            "{body}: {r:?}"
        );
        assert_eq!(served.load(Ordering::SeqCst), 1, "{body}: not retried");
    }
}

/// A typed element, so that a field of the wrong type is refused as the product's types refuse it.
#[derive(serde::Deserialize, Debug)]
struct Named {
    #[allow(dead_code)]
    name: String,
}
