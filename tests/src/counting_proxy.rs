//! A TCP proxy in front of an object store that counts the HTTP requests passing through it:
//! what a storage benchmark reports as "storage requests". It counts request lines (`... /path
//! HTTP/1.1\r\n`) in the client-to-server stream, across reads and keep-alive connections; the
//! bodies it forwards untouched are encrypted packs and JSON, in which that 11-byte ending does
//! not occur by chance at any rate that matters.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;

const REQUEST_LINE_END: &[u8] = b" HTTP/1.1\r\n";

/// A counting proxy to `127.0.0.1:backend_port`; it runs until the process ends.
pub struct CountingProxy {
    pub port: u16,
    requests: Arc<AtomicU64>,
}

impl CountingProxy {
    pub fn start(backend_port: u16) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the counting proxy")?;
        let port = listener.local_addr()?.port();
        let requests = Arc::new(AtomicU64::new(0));
        let count = requests.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", backend_port)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let count = count.clone();
                std::thread::spawn(move || pump(client, server, Some(&count)));
                std::thread::spawn(move || pump(s2, c2, None));
            }
        });
        Ok(Self { port, requests })
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, count: Option<&AtomicU64>) {
    let mut buf = vec![0u8; 64 * 1024];
    // The end of the previous read, so a request line split across two reads is still seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(count) = count {
            let mut window = std::mem::take(&mut tail);
            window.extend_from_slice(&buf[..n]);
            let found = window
                .windows(REQUEST_LINE_END.len())
                .filter(|w| *w == REQUEST_LINE_END)
                .count();
            count.fetch_add(found as u64, Ordering::SeqCst);
            let keep = REQUEST_LINE_END.len() - 1;
            tail = window[window.len().saturating_sub(keep)..].to_vec();
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_across_connections_and_split_reads() {
        let backend = TcpListener::bind("127.0.0.1:0").expect("bind");
        let backend_port = backend.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for s in backend.incoming() {
                let Ok(mut s) = s else { continue };
                std::thread::spawn(move || {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b) {
                        if n == 0 || s.write_all(b"ok").is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = CountingProxy::start(backend_port).expect("proxy");
        for _ in 0..2 {
            let mut c = TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect");
            c.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPUT /b HTT")
                .expect("write");
            let mut b = [0u8; 2];
            c.read_exact(&mut b).expect("echo");
            c.write_all(b"P/1.1\r\nContent-Length: 0\r\n\r\n")
                .expect("write");
            c.read_exact(&mut b).expect("echo");
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while proxy.requests() < 4 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(proxy.requests(), 4);
    }
}
