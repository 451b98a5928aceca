//! A TCP proxy in front of a git server that holds every byte while its gate is closed: a source
//! exactly as slow as a test needs, for as long as it needs. A backup whose fetch goes through a
//! closed gate stays in the middle of its fetch (leased, running) until the test opens it, so
//! whatever the test does meanwhile (restart the coordinator, say) happens during the backup,
//! whatever the machine's speed.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use anyhow::Context as _;

#[derive(Default)]
struct Shared {
    open: Mutex<bool>,
    opened: Condvar,
    connections: AtomicUsize,
    stop: AtomicBool,
    /// Every stream of every connection, both sides, so drop can end them all.
    streams: Mutex<Vec<TcpStream>>,
}

impl Shared {
    /// Blocks while the gate is closed (or until the proxy stops).
    fn wait_open(&self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        while !*open && !self.stop.load(Ordering::SeqCst) {
            open = self
                .opened
                .wait(open)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn keep(&self, s: &TcpStream) {
        if let Ok(c) = s.try_clone() {
            self.streams
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(c);
        }
    }
}

/// Forwards `127.0.0.1:PORT` to a backend port; bytes (both ways) wait at the gate while it is
/// closed. Stops on drop (every connection is shut down).
pub struct GatedProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl GatedProxy {
    /// A proxy to `127.0.0.1:backend_port` with its gate closed.
    pub fn start(backend_port: u16) -> anyhow::Result<GatedProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the gated proxy")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let backend = SocketAddr::from(([127, 0, 0, 1], backend_port));
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(backend) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                s.connections.fetch_add(1, Ordering::SeqCst);
                s.keep(&client);
                s.keep(&server);
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    let s = s.clone();
                    std::thread::spawn(move || pump(from, to, &s));
                }
            }
        });
        Ok(GatedProxy {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// `git://127.0.0.1:PORT/NAME` through the proxy (for a `git daemon` backend).
    pub fn git_url(&self, name: &str) -> String {
        format!("git://{}/{name}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Lets every held and future byte through.
    pub fn open(&self) {
        *self
            .shared
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.opened.notify_all();
    }
}

/// Copies `from` to `to` through the gate until either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        shared.wait_open();
        if shared.stop.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for GatedProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.opened.notify_all();
        for s in self
            .shared
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
        // Wakes the accept loop, which then sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}
