//! A network partition on loopback: a TCP proxy between a client and a real server whose
//! connections the test can cut and whose door it can keep shut, then open again. The real API
//! server cannot drop its clients' watches on demand; this makes the path between them do it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

#[derive(Default)]
struct State {
    shut: AtomicBool,
    conns: Mutex<Vec<AbortHandle>>,
}

pub struct Partition {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl Partition {
    /// Forwards every connection made to [`Partition::addr`] to `upstream`, byte for byte
    /// (TLS passes through untouched).
    pub async fn start(upstream: SocketAddr) -> Partition {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(State::default());
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if st.shut.load(Ordering::SeqCst) {
                    drop(client); // the client sees its connection closed at once
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut conns = st.conns.lock().expect("lock");
                conns.retain(|c| !c.is_finished());
                conns.push(task.abort_handle());
            }
        });
        Partition {
            addr,
            state,
            accept,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection and refuses new ones until [`Partition::heal`].
    pub fn cut(&self) {
        self.state.shut.store(true, Ordering::SeqCst);
        for c in self.state.conns.lock().expect("lock").drain(..) {
            c.abort();
        }
    }

    pub fn heal(&self) {
        self.state.shut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
