//! The one way edgebind serves HTTP (gateway API, gateway admin, controller admin): an accept
//! loop with deadlines and size limits, so that a client sending one byte at a time cannot hold
//! a connection, or a task, indefinitely (issue 12, strict protocol). `axum::serve` sets no
//! header-read timeout, which is why it is not used.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// From the connection's start (or the end of the previous response) until the request's
    /// headers are complete; also how long an idle keep-alive connection is kept.
    pub header_read: Duration,
    /// From the headers until the response is ready: the body must have arrived and been
    /// handled by then (handlers bound their own calls well below it). Else `408`.
    pub request: Duration,
    /// Largest request head (request line and headers) read into memory; beyond it the
    /// connection is answered `431` and closed.
    pub max_head_bytes: usize,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(30),
            max_head_bytes: 32 * 1024,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves. Then no new connection is accepted,
/// requests in progress are finished (connections close after their response), and whatever
/// is still open after the request deadline is dropped.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    deadlines: Deadlines,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut conns = tokio::task::JoinSet::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of descriptors and the like: wait a moment rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Reap finished connections so the set does not grow with the listener's lifetime.
        while conns.try_join_next().is_some() {}
        let app = app.clone();
        let mut stop = stop_rx.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(answer(app, req, deadlines.request).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(deadlines.header_read)
                .max_buf_size(deadlines.max_head_bytes.max(8192))
                .serve_connection(TokioIo::new(stream), svc);
            let mut conn = std::pin::pin!(conn);
            // Errors here are the client's (reset, timeout, malformed head): nothing to report.
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    let _ = stop_tx.send(true);
    let drained = async { while conns.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(deadlines.request, drained).await;
    conns.shutdown().await;
    Ok(())
}

async fn answer(app: Router, req: Request<Incoming>, deadline: Duration) -> Response<Body> {
    match tokio::time::timeout(deadline, app.oneshot(req.map(Body::new))).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(never)) => match never {},
        Err(_) => {
            let mut r = Response::new(Body::from("request deadline exceeded"));
            *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
            r.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn start(d: Deadlines) -> std::net::SocketAddr {
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .route("/echo", post(|b: axum::body::Bytes| async move { b }));
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(serve(l, app, d, std::future::pending()));
        addr
    }

    fn quick() -> Deadlines {
        Deadlines {
            header_read: Duration::from_millis(600),
            request: Duration::from_millis(600),
            max_head_bytes: 8192,
        }
    }

    /// Reads until the server closes the connection (or 5 s pass); returns what it sent.
    async fn read_to_close(s: &mut tokio::net::TcpStream) -> (String, Duration) {
        let t = Instant::now();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
    }

    #[tokio::test]
    async fn a_slow_head_is_cut_off_at_the_header_deadline() {
        let addr = start(quick()).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let t = Instant::now();
        // One byte every 100 ms: the head would take seconds.
        for b in b"GET / HTTP/1.1\r\nHost: x\r\n" {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if t.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        let (_, _) = read_to_close(&mut s).await;
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "the connection was held {:?}",
            t.elapsed()
        );
    }

    #[tokio::test]
    async fn a_slow_body_gets_408_at_the_request_deadline() {
        let addr = start(quick()).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
            .await
            .expect("head");
        let (resp, took) = read_to_close(&mut s).await;
        assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[tokio::test]
    async fn shutdown_finishes_the_request_in_progress_then_stops_accepting() {
        let app = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(l, app, quick(), async move {
            let _ = rx.await;
        }));
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("request");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = tx.send(());
        let (resp, _) = read_to_close(&mut s).await;
        assert!(
            resp.starts_with("HTTP/1.1 200") && resp.ends_with("done"),
            "{resp}"
        );
        server.await.expect("joined").expect("served");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "no longer listening"
        );
    }

    #[tokio::test]
    async fn an_oversized_head_is_refused_and_a_normal_request_served() {
        let addr = start(quick()).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(20_000)
        );
        let _ = s.write_all(big.as_bytes()).await;
        let (resp, _) = read_to_close(&mut s).await;
        assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");

        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let (resp, _) = read_to_close(&mut s).await;
        assert!(
            resp.starts_with("HTTP/1.1 200") && resp.ends_with("ok"),
            "{resp}"
        );
    }
}
