//! Why a call to the coordinator failed, said in the terms an operator acts on, each kind with
//! its own exit code (`exit`, listed in `--help`): nothing listens or nothing answers (4), TLS
//! (6), not a repovault coordinator (7), unauthenticated (8), forbidden (9).
//!
//! tonic reports every one of these as "transport error" or a bare gRPC code; what happened is
//! in the error's source chain (an `io::Error`, a `rustls::Error`, a `hyper::Error`, this
//! crate's [`DeadlineExceeded`]) or in the code the coordinator answered with. [`from_status`]
//! and [`from_transport`] read both. One case needs a look at the peer: an `http://` address
//! whose answer is not HTTP/2 is either a TLS coordinator or some other server, and [`refine`]
//! reads its first bytes to say which.

use std::error::Error as StdError;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;

use crate::admin_client::CliError;
use crate::connection::{DeadlineExceeded, target};
use crate::exit;

/// The kinds of connection failure; each has its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing listens at the address (or it cannot be reached at all).
    Refused,
    /// Something accepted the connection and did not answer within the timeout, or a
    /// coordinator stopped answering keepalive pings during a call.
    TimedOut,
    /// The TLS handshake failed: plaintext against TLS or the reverse, an untrusted CA.
    Tls,
    /// Something answered that is not a repovault coordinator (another HTTP server, the
    /// coordinator's metrics port).
    NotCoordinator,
    /// No admin token, or one the coordinator does not know.
    Unauthenticated,
    /// The token's role does not allow the call.
    Forbidden,
}

impl Failure {
    pub fn exit_code(self) -> i32 {
        match self {
            Failure::Refused | Failure::TimedOut => exit::UNREACHABLE,
            Failure::Tls => exit::TLS,
            Failure::NotCoordinator => exit::NOT_A_COORDINATOR,
            Failure::Unauthenticated => exit::UNAUTHENTICATED,
            Failure::Forbidden => exit::FORBIDDEN,
        }
    }

    fn error(self, message: String) -> CliError {
        let mut e = CliError::new(self.exit_code(), message);
        e.failure = Some(self);
        e
    }
}

/// The CLI's error for a failed call.
pub fn from_status(s: &tonic::Status) -> CliError {
    let url = target();
    match s.code() {
        Code::Unauthenticated => {
            return Failure::Unauthenticated.error(format!(
                "the coordinator at {url} does not know the caller: {} (give an admin token \
                 with --admin-token-file or REPOVAULT_ADMIN_TOKEN_FILE)",
                s.message()
            ));
        }
        Code::PermissionDenied => {
            return Failure::Forbidden.error(format!(
                "not allowed: {} (the admin token's role does not permit this call)",
                s.message()
            ));
        }
        Code::Unimplemented => {
            return Failure::NotCoordinator.error(format!(
                "{url} answered, but not as a repovault coordinator of this version ({}): is \
                 this the coordinator's gRPC address, not its HTTP (metrics) port?",
                s.message()
            ));
        }
        _ => {}
    }
    if let Some(e) = StdError::source(s)
        && let Some(f) = classify(e)
    {
        return f;
    }
    let code = match s.code() {
        Code::NotFound => exit::NOT_FOUND,
        Code::Unavailable => exit::UNREACHABLE,
        Code::InvalidArgument | Code::AlreadyExists | Code::OutOfRange => exit::USAGE,
        _ => exit::FAILED,
    };
    CliError::new(code, s.message().to_string())
}

/// The CLI's error for a failed connection attempt.
pub fn from_transport(e: &(dyn StdError + 'static)) -> CliError {
    classify(e).unwrap_or_else(|| {
        Failure::Refused.error(format!(
            "coordinator unreachable: cannot reach {}: {}",
            target(),
            chain(e)
        ))
    })
}

/// Reads the source chain of a failure; `None` when it names none of the kinds.
fn classify(top: &(dyn StdError + 'static)) -> Option<CliError> {
    let url = target();
    let https = url.starts_with("https://");
    let mut protocol = false;
    let mut next = Some(top);
    while let Some(e) = next {
        if let Some(d) = e.downcast_ref::<DeadlineExceeded>() {
            return Some(Failure::TimedOut.error(format!(
                "coordinator unreachable: no answer from {url} within {} (--timeout, \
                 REPOVAULT_TIMEOUT): is this a repovault coordinator, and is it overloaded or \
                 stopped?",
                humantime::format_duration(d.0)
            )));
        }
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(tls(t));
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            // hyper names an error while reading a response's body (the call had started, so
            // the peer is a gRPC server) only in its text; a keepalive timeout surfaces as one
            // of these, with the stream closed under it.
            if h.is_timeout() || h.to_string().starts_with("error reading a body") {
                return Some(Failure::TimedOut.error(format!(
                    "coordinator unreachable: the coordinator at {url} stopped answering during \
                     the call (keepalive pings unanswered within --timeout) or closed the \
                     connection: is it still running?"
                )));
            }
            // Any other HTTP/2 failure before an answer: the peer does not speak gRPC.
            protocol = true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(tls(t));
            }
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return Some(Failure::Refused.error(format!(
                        "coordinator unreachable: nothing listens at {url}: is the \
                         coordinator running, and is the address and port right?"
                    )));
                }
                std::io::ErrorKind::TimedOut => {
                    return Some(Failure::TimedOut.error(format!(
                        "coordinator unreachable: connecting to {url} timed out: is the \
                         address right, and is a firewall dropping the connection?"
                    )));
                }
                // During a TLS handshake, a peer that closes instead of answering is not a TLS
                // server; without TLS, a peer that closes is one that does not speak gRPC.
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                    if https {
                        return Some(Failure::Tls.error(format!(
                            "the TLS handshake with {url} failed ({io}): is the coordinator \
                             serving plaintext? Then its address starts http://"
                        )));
                    }
                    protocol = true;
                }
                _ => {}
            }
        }
        next = e.source();
    }
    protocol.then(|| {
        Failure::NotCoordinator.error(format!(
            "{url} does not answer as a repovault coordinator does (gRPC over HTTP/2): {}",
            chain(top)
        ))
    })
}

fn tls(e: &rustls::Error) -> CliError {
    let url = target();
    let hint = match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
            "its certificate is not signed by a CA this machine trusts: give the CA with \
             --ca-file or REPOVAULT_CA_FILE"
        }
        rustls::Error::InvalidCertificate(_) => {
            "its certificate is not valid for this address (name, dates): check the URL's \
             host name and the coordinator's certificate"
        }
        rustls::Error::InvalidMessage(_) => {
            "it does not speak TLS: is the coordinator serving plaintext? Then its address \
             starts http://"
        }
        _ => "check the coordinator's TLS settings and --ca-file",
    };
    Failure::Tls.error(format!("TLS with {url} failed ({e}): {hint}"))
}

/// An error and its sources, `: `-joined, each said once (tonic's own text is only
/// "transport error").
fn chain(top: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(top);
    while let Some(e) = next {
        let s = e.to_string();
        if s != "transport error" && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// How long [`refine`] waits for the peer's first bytes: one round trip on any network an
/// admin works over, with margin; it runs only after a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A not-a-coordinator failure at an `http://` address is refined by a look at the peer: it
/// may be a TLS coordinator, or a coordinator that went away mid-call. Sends what a gRPC client
/// sends first and reads the answer's first bytes: a TLS record (an alert or a handshake,
/// content type 0x15 or 0x16, version 3.x) means TLS; a refused connection means nothing
/// listens any more; anything else (an HTTP/1 status line, HTTP/2 frames) stays as it was.
pub async fn refine(e: CliError) -> CliError {
    let url = target();
    if e.failure != Some(Failure::NotCoordinator) || !url.starts_with("http://") {
        return e;
    }
    let Ok(uri) = url.parse::<tonic::codegen::http::Uri>() else {
        return e;
    };
    let Some(host) = uri.host() else {
        return e;
    };
    let port = uri.port_u16().unwrap_or(80);
    let probe = async {
        let mut s = match tokio::net::TcpStream::connect((host, port)).await {
            Ok(s) => s,
            Err(e) => return Probe::Unreachable(e),
        };
        let mut head = [0u8; 2];
        match s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await {
            Ok(()) => match s.read_exact(&mut head).await {
                Ok(_) => Probe::Answered(head),
                Err(_) => Probe::Silent,
            },
            Err(_) => Probe::Silent,
        }
    };
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Probe::Answered([0x15 | 0x16, 0x03])) => Failure::Tls.error(format!(
            "{url} speaks TLS: use https://{host}:{port} (with --ca-file for a private CA)"
        )),
        Ok(Probe::Unreachable(io)) => Failure::Refused.error(format!(
            "coordinator unreachable: the connection to {url} closed, and connecting again \
             fails ({io}): is the coordinator running?"
        )),
        _ => e,
    }
}

/// What [`refine`] found at the address.
enum Probe {
    Unreachable(std::io::Error),
    Answered([u8; 2]),
    Silent,
}
