//! The admin CLI's connection to its coordinator, and how long it waits for it.
//!
//! Three bounds keep a command from hanging on an address that accepts TCP and never answers,
//! or on a coordinator that stops answering (its host suspended, a network path gone silent):
//!
//! - connecting (TCP, and TLS for `https://`) takes at most [`CONNECT_TIMEOUT`], or the
//!   request timeout when that is shorter;
//! - each call waits at most the request timeout (`--timeout`, `REPOVAULT_TIMEOUT`, default
//!   [`DEFAULT_TIMEOUT`]) for its answer, or for a stream (`WatchTask`, a download) to open.
//!   Calls whose answer waits for a whole job the coordinator does while the caller waits
//!   ([`LONG_CALLS`]) have no such bound unless `--timeout` is given; keepalive notices a dead
//!   coordinator for them;
//! - while any call or stream is open, an HTTP/2 PING goes out after [`KEEPALIVE_INTERVAL`]
//!   without traffic and must be answered within the request timeout, else the connection is
//!   closed and the call fails. A live coordinator answers PINGs whatever its handlers do, so
//!   a long restore watched for hours is never cut, while a dead one is noticed within
//!   [`KEEPALIVE_INTERVAL`] plus the timeout.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use tonic::codegen::{Context, Future, Pin, Poll, Service, StdError, http};
use tonic::transport::Channel;

use crate::admin_client::CliError;
use crate::failure;

/// What a call may wait for its answer by default: every admin call the coordinator answers
/// from its store (lists, shows, enqueues) returns within milliseconds, so 30 s leaves two
/// orders of magnitude for a loaded coordinator or a slow link while a person at a terminal
/// still learns within half a minute that nothing answers.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The connect bound: the one every repovault client uses (`repovault_common::grpc::endpoint`,
/// chosen there so that a worker notices a coordinator restart within a heartbeat); the CLI
/// lowers it to the request timeout when that is shorter.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle time on an open call before a keepalive PING: 10 s, the shortest keepalive interval
/// gRPC's reference clients accept. The coordinator (tonic on hyper) answers PINGs at any rate;
/// a gRPC proxy in between that polices pings may want a longer one, which is a change here.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Calls that do a whole job while the caller waits, by gRPC path: discovery of a forge
/// organisation (`AddOrg` discovers a GitHub organisation's repositories), reading every
/// catalog object in storage, deleting every backup of an organisation or repository, a
/// retention change that expires backups, and reading a backup's documents from its snapshot.
/// Their time grows with the data, so no default bound fits them.
pub const LONG_CALLS: &[&str] = &[
    "AddOrg",
    "AddStorageLocation",
    "MoveOrgStorage",
    "SyncOrg",
    "RebuildCatalog",
    "PurgeOrg",
    "PurgeRepo",
    "SetRetention",
    "BrowseBackup",
];

/// The request timeout and whether it was given (`--timeout` or `REPOVAULT_TIMEOUT`) rather
/// than defaulted: a given one bounds every call, [`LONG_CALLS`] included.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub request: Duration,
    pub explicit: bool,
}

impl Timeouts {
    pub fn new(given: Option<Duration>) -> Self {
        match given {
            Some(request) => Self {
                request,
                explicit: true,
            },
            None => Self {
                request: DEFAULT_TIMEOUT,
                explicit: false,
            },
        }
    }

    /// The bound of the call to gRPC `path` (`/repovault.v1.AdminService/ListOrgs`).
    fn for_path(&self, path: &str) -> Option<Duration> {
        let method = path.rsplit('/').next().unwrap_or(path);
        if !self.explicit && LONG_CALLS.contains(&method) {
            None
        } else {
            Some(self.request)
        }
    }
}

/// `--timeout`: a duration such as `30s` or `2m`, more than zero.
pub fn parse_timeout(v: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(v).map_err(|e| format!("{v:?}: {e}"))?;
    if d.is_zero() {
        return Err(format!("{v:?}: a timeout must be more than zero"));
    }
    Ok(d)
}

/// The coordinator URL this process talks to, for error messages that name it.
static TARGET: OnceLock<String> = OnceLock::new();

/// The URL [`connect`] was given (empty before it was called).
pub fn target() -> &'static str {
    TARGET.get().map(String::as_str).unwrap_or("")
}

/// The bounds [`connect`] was given, for the CLI's other connections to the coordinator (the
/// download link of `backup download`, on its HTTP port).
static TIMEOUTS: OnceLock<Timeouts> = OnceLock::new();

/// The bounds of this process's calls ([`Timeouts::new`]`(None)` before [`connect`]).
pub fn timeouts() -> Timeouts {
    TIMEOUTS
        .get()
        .copied()
        .unwrap_or_else(|| Timeouts::new(None))
}

/// A call that did not answer within its bound: the source [`failure`] recognises.
#[derive(Debug, thiserror::Error)]
#[error("no answer within {0:?}")]
pub struct DeadlineExceeded(pub Duration);

/// A channel whose calls are bounded as [`Timeouts::for_path`] says.
#[derive(Clone)]
pub struct Deadline {
    inner: Channel,
    timeouts: Timeouts,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Service<http::Request<tonic::body::Body>> for Deadline {
    type Response = http::Response<tonic::body::Body>;
    type Error = StdError;
    type Future = BoxFuture<Result<Self::Response, StdError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StdError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let bound = self.timeouts.for_path(req.uri().path());
        let call = self.inner.call(req);
        Box::pin(async move {
            match bound {
                None => call.await.map_err(Into::into),
                Some(d) => match tokio::time::timeout(d, call).await {
                    Ok(r) => r.map_err(Into::into),
                    Err(_) => Err(Box::new(DeadlineExceeded(d)) as StdError),
                },
            }
        })
    }
}

/// Connects to the coordinator at `urls`, one URL or a group's several separated by commas
/// (trusting `ca_file` besides the system's roots for `https://`), within the connect bound,
/// with keepalive on open calls; failures are classified by [`failure`]. Of several, the one
/// whose admin service reports SERVING (the group's leader) is used; when none does (an
/// election under way), the first that answers, whose refusal then names the leader.
pub async fn connect(
    urls: &str,
    ca_file: Option<&Path>,
    timeouts: Timeouts,
) -> Result<Deadline, CliError> {
    let _ = TIMEOUTS.set(timeouts);
    let list = repovault_common::leader_channel::split_urls(urls);
    let chosen = match list.as_slice() {
        [] => return Err(CliError::usage("--coordinator: no URL given")),
        [one] => (one.clone(), connect_one(one, ca_file, timeouts).await?),
        several => leader_of(several, ca_file, timeouts).await?,
    };
    let _ = TARGET.set(chosen.0);
    Ok(Deadline {
        inner: chosen.1,
        timeouts,
    })
}

/// The member of a group that leads (see [`connect`]).
async fn leader_of(
    urls: &[String],
    ca_file: Option<&Path>,
    timeouts: Timeouts,
) -> Result<(String, Channel), CliError> {
    let mut answered = None;
    let mut failed = None;
    for url in urls {
        match connect_one(url, ca_file, timeouts).await {
            Ok(channel) => {
                if leads(&channel, timeouts.request).await {
                    return Ok((url.clone(), channel));
                }
                answered.get_or_insert((url.clone(), channel));
            }
            Err(e) => failed = Some(e),
        }
    }
    match (answered, failed) {
        (Some(a), _) => Ok(a),
        (None, Some(e)) => Err(e),
        (None, None) => Err(CliError::usage("--coordinator: no URL given")),
    }
}

/// Whether the coordinator behind `channel` serves the admin service now.
async fn leads(channel: &Channel, within: Duration) -> bool {
    use tonic_health::pb::health_check_response::ServingStatus;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let ask = health.check(tonic_health::pb::HealthCheckRequest {
        service: repovault_proto::v1::admin_service_server::SERVICE_NAME.to_string(),
    });
    matches!(
        tokio::time::timeout(within, ask).await,
        Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32
    )
}

/// One coordinator's channel, connected now within the connect bound.
async fn connect_one(
    url: &str,
    ca_file: Option<&Path>,
    timeouts: Timeouts,
) -> Result<Channel, CliError> {
    let connect_timeout = CONNECT_TIMEOUT.min(timeouts.request);
    let endpoint = repovault_common::grpc::endpoint(url, ca_file)
        .map_err(|e| CliError::usage(e.to_string()))?
        .connect_timeout(connect_timeout)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(timeouts.request)
        .keep_alive_while_idle(false);
    // The connector's own bound covers TCP and TLS; this one also covers the HTTP/2 set-up.
    match tokio::time::timeout(connect_timeout, endpoint.connect()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(failure::from_transport(&e)),
        Err(_) => Err(failure::from_transport(&DeadlineExceeded(connect_timeout))),
    }
}
