//! [`EtcdKv`]: the state store on an etcd v3 cluster, for a group of coordinators.
//!
//! A thin translation: [`KvBackend`]'s data model is etcd's (see the module docs of `kv`), so a
//! [`Txn`] is one etcd `Txn` with the same compares and ops, and revisions are etcd's own.
//! Every key lives under a namespace (`repovault/` by default), so one etcd can serve several
//! installations and nothing else in it is touched; keys are stripped of it on the way back.
//!
//! Reads of many keys page: [`PAGE_KEYS`] keys per request, every page read at the revision of
//! the first, so a range is one consistent snapshot however long it is and no answer outgrows a
//! gRPC message. The limits of [`Txn::validate`] are etcd's defaults, checked before a request
//! leaves; etcd counts the namespace and framing too, so a transaction within a few bytes of
//! `--max-request-bytes` could still be refused by etcd, and then fails with etcd's message.
//!
//! TLS (a CA, and a client certificate when etcd asks for one) and etcd's user authentication
//! (a token from `Authenticate`, renewed when etcd stops taking it) come from `[store]`.
//!
//! The client speaks etcd's API from `proto/etcd/etcdserverpb/rpc.proto` (the part used, with
//! etcd's field numbers), generated with the vendored protoc like the rest of the protocol, so
//! building needs no protobuf compiler on the machine.

use std::time::Duration;

use std::sync::Arc;

use async_trait::async_trait;
use repovault_common::secret::Secret;
use repovault_proto::etcd as pb;
use repovault_proto::etcd::auth_client::AuthClient;
use repovault_proto::etcd::compare::{CompareResult, CompareTarget as PbTarget, TargetUnion};
use repovault_proto::etcd::kv_client::KvClient;
use repovault_proto::etcd::lease_client::LeaseClient;
use repovault_proto::etcd::request_op::Request;
use repovault_proto::etcd::response_op::Response;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::{
    CmpOp, Compare, CompareTarget, KeyRange, KeyValue, KvBackend, KvError, KvResult, Op,
    OpResponse, Txn, TxnResponse, prefix_end,
};

/// Keys per page of a range read. A page of small records is a few hundred KiB; the largest
/// value is 1.5 MiB (etcd's request limit), so even a page of the largest values stays far below
/// [`MAX_MESSAGE_BYTES`] in practice.
const PAGE_KEYS: usize = 256;

/// The largest answer the client decodes: tonic's default is 4 MiB, which a page of large
/// values could pass.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How long a connection attempt to one endpoint may take: etcd answers on loopback or a LAN in
/// milliseconds; 5 s tells a dead member from a slow one without holding start-up long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one request may take. etcd's own request timeout is 5 s plus the election timeout;
/// 30 s outlasts a leader election (etcd: about 1 s on a LAN) with room to spare.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach etcd: where, under which namespace, over TLS or not, as which user.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// `host:port` or URLs; `https://` ones (or any, when `tls` is set) use TLS.
    pub endpoints: Vec<String>,
    pub namespace: String,
    pub tls: Option<EtcdTls>,
    /// etcd's user authentication: a user name and its password.
    pub user: Option<(String, Secret)>,
}

/// TLS towards etcd: the CA that signed etcd's certificates, and a client certificate when
/// etcd asks for one (`--client-cert-auth`).
#[derive(Clone)]
pub struct EtcdTls {
    pub ca_pem: Vec<u8>,
    /// (certificate chain, private key), PEM.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.client.is_some() {
            "EtcdTls(CA, client certificate, [redacted key])"
        } else {
            "EtcdTls(CA)"
        })
    }
}

/// The state store on etcd.
#[derive(Clone)]
pub struct EtcdKv {
    pub(super) client: KvClient<Channel>,
    /// Leases: the coordinator group's election (`etcd_lease.rs`).
    pub(super) leases: LeaseClient<Channel>,
    pub(super) namespace: Vec<u8>,
    auth: Option<Arc<EtcdAuth>>,
    /// Set on the elected leader's store: every transaction is guarded by its term
    /// (`etcd_lease.rs`).
    pub(super) fence: Option<Arc<super::etcd_lease::Fence>>,
}

/// etcd's user authentication: a token from `Authenticate`, sent as the `token` metadata of
/// every request and fetched again when etcd no longer takes it (a simple token lapses after
/// `--auth-token-ttl`, 5 minutes by default, of disuse; a restart forgets every token).
struct EtcdAuth {
    client: AuthClient<Channel>,
    user: String,
    password: Secret,
    token: tokio::sync::RwLock<Option<MetadataValue<tonic::metadata::Ascii>>>,
}

impl EtcdAuth {
    async fn token(&self) -> KvResult<MetadataValue<tonic::metadata::Ascii>> {
        if let Some(t) = self.token.read().await.clone() {
            return Ok(t);
        }
        self.renew().await
    }

    async fn renew(&self) -> KvResult<MetadataValue<tonic::metadata::Ascii>> {
        let mut slot = self.token.write().await;
        let r = self
            .client
            .clone()
            .authenticate(pb::AuthenticateRequest {
                name: self.user.clone(),
                password: self.password.expose().to_string(),
            })
            .await
            .map_err(|s| status(&format!("authenticating as {:?}", self.user), s))?
            .into_inner();
        let token = MetadataValue::try_from(r.token.as_str())
            .map_err(|_| KvError::Backend("etcd returned an unusable auth token".into()))?;
        *slot = Some(token.clone());
        Ok(token)
    }
}

/// How often a request that never reached etcd is sent again: the balancer picks among the
/// endpoints and only learns that a member is down by failing to connect to it, so with one
/// member of three down a request meets it about a third of the time; five more tries make
/// meeting it every time a one-in-250 event, well below etcd's own failure rates.
const UNSENT_RETRIES: u32 = 5;

/// The pause between those tries: a refused connect is answered at once, so this spaces the
/// tries over half a second, about etcd's own election time, rather than a burst.
const UNSENT_PAUSE: Duration = Duration::from_millis(100);

/// Whether the request failed before it was sent (no connection to the member it was sent to):
/// only then may a write be sent again without the risk of applying it twice.
fn never_sent(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::Unavailable
        && [
            "tcp connect error",
            "Connection refused",
            "error trying to connect",
        ]
        .iter()
        .any(|m| s.message().contains(m))
}

/// Whether etcd refused a request for its auth token (lapsed, or forgotten by a restart).
pub(super) fn token_refused(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::Unauthenticated || s.message().contains("invalid auth token")
}

impl EtcdKv {
    /// Connects to the cluster at `endpoints` over plaintext, without authentication.
    pub async fn connect(endpoints: &[String], namespace: &str) -> KvResult<Self> {
        Self::connect_with(&EtcdOptions {
            endpoints: endpoints.to_vec(),
            namespace: namespace.to_string(),
            tls: None,
            user: None,
        })
        .await
    }

    /// Connects as `options` say (requests go to any endpoint). Fails when no endpoint answers
    /// a first read, naming the endpoints and etcd's answer.
    pub async fn connect_with(options: &EtcdOptions) -> KvResult<Self> {
        let endpoints = &options.endpoints;
        if endpoints.is_empty() {
            return Err(KvError::Backend("etcd: no endpoints configured".into()));
        }
        let mut list = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            let scheme = if options.tls.is_some() {
                "https"
            } else {
                "http"
            };
            let url = if e.contains("://") {
                e.clone()
            } else {
                format!("{scheme}://{e}")
            };
            let mut endpoint = Endpoint::from_shared(url)
                .map_err(|err| KvError::Backend(format!("etcd endpoint {e:?}: {err}")))?
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT);
            if let Some(tls) = &options.tls {
                let mut config =
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
                if let Some((cert, key)) = &tls.client {
                    config = config.identity(Identity::from_pem(cert, key));
                }
                endpoint = endpoint
                    .tls_config(config)
                    .map_err(|err| KvError::Backend(format!("etcd endpoint {e:?}: TLS: {err}")))?;
            }
            list.push(endpoint);
        }
        let channel = Channel::balance_list(list.into_iter());
        let auth = options.user.as_ref().map(|(user, password)| {
            Arc::new(EtcdAuth {
                client: AuthClient::new(channel.clone()),
                user: user.clone(),
                password: password.clone(),
                token: tokio::sync::RwLock::new(None),
            })
        });
        let kv = Self {
            client: KvClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES),
            leases: LeaseClient::new(channel),
            namespace: options.namespace.as_bytes().to_vec(),
            auth,
            fence: None,
        };
        kv.revision().await.map_err(|e| {
            KvError::Backend(format!(
                "etcd at {}: no answer to a first read: {e}",
                endpoints.join(", ")
            ))
        })?;
        Ok(kv)
    }

    /// `msg` as a request carrying the auth token, when etcd wants one.
    pub(super) async fn request<T>(&self, msg: T) -> KvResult<tonic::Request<T>> {
        let mut req = tonic::Request::new(msg);
        if let Some(auth) = &self.auth {
            req.metadata_mut().insert("token", auth.token().await?);
        }
        Ok(req)
    }

    /// Fetches a new auth token (when etcd's authentication is on).
    pub(super) async fn renew_token(&self) -> KvResult<()> {
        if let Some(auth) = &self.auth {
            auth.renew().await?;
        }
        Ok(())
    }

    /// Runs `call` with the token; once more with a new token when etcd refused the old one.
    pub(super) async fn call<T: Clone, R, F, Fut>(
        &self,
        doing: &str,
        msg: T,
        call: F,
    ) -> KvResult<R>
    where
        F: Fn(KvClient<Channel>, tonic::Request<T>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let mut unsent = 0;
        loop {
            match call(self.client.clone(), self.request(msg.clone()).await?).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if token_refused(&s) && self.auth.is_some() => {
                    if let Some(auth) = &self.auth {
                        auth.renew().await?;
                    }
                    return call(self.client.clone(), self.request(msg).await?)
                        .await
                        .map(tonic::Response::into_inner)
                        .map_err(|s| status(doing, s));
                }
                Err(s) if never_sent(&s) && unsent < UNSENT_RETRIES => {
                    unsent += 1;
                    tokio::time::sleep(UNSENT_PAUSE).await;
                }
                Err(s) => return Err(status(doing, s)),
            }
        }
    }

    pub(super) fn key(&self, key: &[u8]) -> Vec<u8> {
        [self.namespace.as_slice(), key].concat()
    }

    /// The end of the namespaced range: `end` itself, or the end of the namespace for an
    /// unbounded range (etcd's `\0` meaning "every key from here" would leave the namespace).
    fn range_end(&self, end: Option<&[u8]>) -> Vec<u8> {
        match end {
            Some(end) => self.key(end),
            None => prefix_end(&self.namespace).unwrap_or_else(|| vec![0]),
        }
    }

    pub(super) fn unkey(&self, kv: pb::KeyValue) -> KvResult<KeyValue> {
        let key = kv
            .key
            .strip_prefix(self.namespace.as_slice())
            .ok_or_else(|| KvError::Backend("etcd returned a key outside the namespace".into()))?
            .to_vec();
        Ok(KeyValue {
            key,
            value: kv.value,
            mod_revision: revision(kv.mod_revision)?,
        })
    }

    fn compare(&self, c: &Compare) -> pb::Compare {
        let (op, target, union) = match &c.target {
            CompareTarget::ModRevision(op, rev) => (
                op,
                PbTarget::Mod,
                TargetUnion::ModRevision(i64::try_from(*rev).unwrap_or(i64::MAX)),
            ),
            CompareTarget::Value(op, v) => (op, PbTarget::Value, TargetUnion::Value(v.clone())),
        };
        let result = match op {
            CmpOp::Equal => CompareResult::Equal,
            CmpOp::NotEqual => CompareResult::NotEqual,
            CmpOp::Less => CompareResult::Less,
            CmpOp::Greater => CompareResult::Greater,
        };
        pb::Compare {
            result: result.into(),
            target: target.into(),
            key: self.key(&c.key),
            target_union: Some(union),
            range_end: Vec::new(),
        }
    }

    fn op(&self, op: &Op) -> pb::RequestOp {
        let request = match op {
            Op::Put { key, value } => Request::RequestPut(pb::PutRequest {
                key: self.key(key),
                value: value.clone(),
                ..Default::default()
            }),
            Op::Delete { key } => Request::RequestDeleteRange(pb::DeleteRangeRequest {
                key: self.key(key),
                ..Default::default()
            }),
            Op::DeletePrefix { prefix } => {
                let start = self.key(prefix);
                let end = prefix_end(&start).unwrap_or_else(|| vec![0]);
                Request::RequestDeleteRange(pb::DeleteRangeRequest {
                    key: start,
                    range_end: end,
                    ..Default::default()
                })
            }
            Op::Get { key } => Request::RequestRange(pb::RangeRequest {
                key: self.key(key),
                ..Default::default()
            }),
        };
        pb::RequestOp {
            request: Some(request),
        }
    }

    pub(super) fn op_response(&self, r: pb::ResponseOp) -> KvResult<OpResponse> {
        Ok(match r.response {
            Some(Response::ResponsePut(_)) => OpResponse::Put,
            Some(Response::ResponseDeleteRange(d)) => OpResponse::Delete {
                deleted: u64::try_from(d.deleted).unwrap_or(0),
            },
            Some(Response::ResponseRange(r)) => OpResponse::Get(
                r.kvs
                    .into_iter()
                    .next()
                    .map(|kv| self.unkey(kv))
                    .transpose()?,
            ),
            Some(Response::ResponseTxn(_)) | None => {
                return Err(KvError::Backend(
                    "etcd answered an operation repovault did not send".into(),
                ));
            }
        })
    }
}

/// An etcd revision as the store's (etcd's are non-negative `int64`s).
fn revision(rev: i64) -> KvResult<u64> {
    u64::try_from(rev).map_err(|_| KvError::Backend(format!("etcd revision {rev} is negative")))
}

pub(super) fn header_revision(h: Option<&pb::ResponseHeader>) -> KvResult<u64> {
    revision(
        h.ok_or_else(|| KvError::Backend("etcd answered without a header".into()))?
            .revision,
    )
}

pub(super) fn status(doing: &str, s: tonic::Status) -> KvError {
    KvError::Backend(format!("etcd {doing}: {} ({:?})", s.message(), s.code()))
}

#[async_trait]
impl KvBackend for EtcdKv {
    fn name(&self) -> &'static str {
        "etcd"
    }

    async fn revision(&self) -> KvResult<u64> {
        let msg = pb::RangeRequest {
            key: self.namespace.clone(),
            limit: 1,
            keys_only: true,
            ..Default::default()
        };
        let r = self
            .call("reading the revision", msg, |mut c, req| async move {
                c.range(req).await
            })
            .await?;
        header_revision(r.header.as_ref())
    }

    async fn range(&self, range: KeyRange, limit: Option<usize>) -> KvResult<Vec<KeyValue>> {
        if range.bounds().is_none() || limit == Some(0) {
            return Ok(Vec::new());
        }
        let end = self.range_end(range.end.as_deref());
        let mut start = self.key(&range.start);
        let mut at_revision = 0i64;
        let mut out = Vec::new();
        loop {
            let want = limit.map_or(PAGE_KEYS, |l| (l - out.len()).min(PAGE_KEYS));
            let msg = pb::RangeRequest {
                key: start.clone(),
                range_end: end.clone(),
                limit: i64::try_from(want).unwrap_or(i64::MAX),
                revision: at_revision,
                ..Default::default()
            };
            let r = self
                .call("reading a range", msg, |mut c, req| async move {
                    c.range(req).await
                })
                .await?;
            if at_revision == 0 {
                at_revision = r
                    .header
                    .as_ref()
                    .map(|h| h.revision)
                    .ok_or_else(|| KvError::Backend("etcd answered without a header".into()))?;
            }
            let next = r.kvs.last().map(|kv| [kv.key.as_slice(), &[0]].concat());
            for kv in r.kvs {
                out.push(self.unkey(kv)?);
            }
            let full = limit.is_some_and(|l| out.len() >= l);
            match next {
                Some(next) if r.more && !full => start = next,
                _ => return Ok(out),
            }
        }
    }

    async fn txn(&self, txn: Txn) -> KvResult<TxnResponse> {
        txn.validate()?;
        let request = pb::TxnRequest {
            compare: txn.compares.iter().map(|c| self.compare(c)).collect(),
            success: txn.success.iter().map(|o| self.op(o)).collect(),
            failure: txn.failure.iter().map(|o| self.op(o)).collect(),
        };
        let r = match &self.fence {
            Some(fence) => self.fenced_txn(fence, request).await?,
            None => {
                self.call("running a transaction", request, |mut c, req| async move {
                    c.txn(req).await
                })
                .await?
            }
        };
        let revision = header_revision(r.header.as_ref())?;
        let responses = r
            .responses
            .into_iter()
            .map(|o| self.op_response(o))
            .collect::<KvResult<Vec<_>>>()?;
        Ok(TxnResponse {
            succeeded: r.succeeded,
            revision,
            responses,
        })
    }
}
