//! Fleet scaling: the number of workers the queue wants, for autoscalers. Exported as the
//! `repovault_desired_workers` gauge (Prometheus, an HPA through prometheus-adapter) and served
//! through KEDA's external scaler interface on the coordinator's gRPC port
//! ([`KedaScaler`]), so a worker Deployment (ScaledObject) or a pool of `worker
//! --exit-when-idle` Jobs (ScaledJob) grows with the queue and shrinks to zero.
//!
//! The scaler serves counts only and needs no token: KEDA's scaler calls carry none, and the
//! figures are what `/metrics` shows anyway. The figure is fleet-wide: worker pools with their
//! own join tokens do not exist yet, so a `pool` in the trigger's metadata is not read.

pub mod worker_count;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use parking_lot::RwLock;
use repovault_proto::keda as pb;
use tonic::{Request, Response, Status};

use crate::tasks::task_queue::TaskQueue;
pub use worker_count::{ScalingConfig, desired_workers};

/// The metric the scaler reports: workers wanted, one replica per unit.
pub const METRIC: &str = "repovault_desired_workers";

/// How often `StreamIsActive` tells KEDA whether there is work. KEDA's own polling interval
/// defaults to 30 s; 5 s lets an `external-push` trigger start a pool within seconds of a
/// backup being queued, for one queue read per stream each time.
const PUSH_EVERY: Duration = Duration::from_secs(5);

/// The queue's figures at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    pub ready: u64,
    pub leased: u64,
    pub desired_workers: u32,
}

/// The scaling component: the bounds (`[scaling]`) and the queue it reads.
pub struct FleetScaling {
    queue: Arc<TaskQueue>,
    config: RwLock<ScalingConfig>,
}

impl FleetScaling {
    pub fn new(queue: Arc<TaskQueue>) -> Self {
        Self {
            queue,
            config: RwLock::new(ScalingConfig::default()),
        }
    }

    /// Sets the bounds (from the configuration, at start-up).
    pub fn configure(&self, c: ScalingConfig) {
        *self.config.write() = c;
    }

    /// The workers `work` tasks (ready plus leased) want under the configured bounds.
    pub fn desired_for(&self, work: u64) -> u32 {
        desired_workers(work, &self.config.read())
    }

    /// Ready and leased tasks now, and the workers they want.
    pub async fn figures(&self) -> Figures {
        let (depth, leased, _) = self.queue.queue_depths().await;
        let ready: u64 = depth.values().sum();
        Figures {
            ready,
            leased,
            desired_workers: self.desired_for(ready + leased),
        }
    }
}

/// KEDA's external scaler over [`FleetScaling`].
pub struct KedaScaler {
    pub scaling: Arc<FleetScaling>,
}

type ActiveStream = Pin<Box<dyn Stream<Item = Result<pb::IsActiveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::external_scaler_server::ExternalScaler for KedaScaler {
    /// Active while any task is ready or leased: a pool scaled to zero starts on the first one.
    async fn is_active(
        &self,
        _req: Request<pb::ScaledObjectRef>,
    ) -> Result<Response<pb::IsActiveResponse>, Status> {
        let f = self.scaling.figures().await;
        Ok(Response::new(pb::IsActiveResponse {
            result: f.ready + f.leased > 0,
        }))
    }

    type StreamIsActiveStream = ActiveStream;

    /// The same answer every [`PUSH_EVERY`], until KEDA closes the stream.
    async fn stream_is_active(
        &self,
        _req: Request<pb::ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let scaling = self.scaling.clone();
        let ticks = tokio::time::interval(PUSH_EVERY);
        let stream = futures::stream::unfold((scaling, ticks), |(scaling, mut ticks)| async move {
            ticks.tick().await;
            let f = scaling.figures().await;
            let item = Ok(pb::IsActiveResponse {
                result: f.ready + f.leased > 0,
            });
            Some((item, (scaling, ticks)))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    /// One metric, [`METRIC`], with a target of one per replica: the replicas KEDA asks for
    /// are the desired workers themselves.
    async fn get_metric_spec(
        &self,
        _req: Request<pb::ScaledObjectRef>,
    ) -> Result<Response<pb::GetMetricSpecResponse>, Status> {
        Ok(Response::new(pb::GetMetricSpecResponse {
            metric_specs: vec![pb::MetricSpec {
                metric_name: METRIC.to_string(),
                target_size: 1,
                target_size_float: 1.0,
            }],
        }))
    }

    async fn get_metrics(
        &self,
        req: Request<pb::GetMetricsRequest>,
    ) -> Result<Response<pb::GetMetricsResponse>, Status> {
        let asked = req.into_inner().metric_name;
        // KEDA prefixes the name with the trigger's index (`s0-repovault_desired_workers`).
        if !asked.is_empty() && !asked.ends_with(METRIC) {
            return Err(Status::not_found(format!(
                "metric {asked:?} is not served; this scaler serves {METRIC}"
            )));
        }
        let f = self.scaling.figures().await;
        Ok(Response::new(pb::GetMetricsResponse {
            metric_values: vec![pb::MetricValue {
                metric_name: if asked.is_empty() {
                    METRIC.to_string()
                } else {
                    asked
                },
                metric_value: i64::from(f.desired_workers),
                metric_value_float: f64::from(f.desired_workers),
            }],
        }))
    }
}
