//! Fleet scaling: the desired-worker figure on `/metrics` and through KEDA's external scaler
//! interface (a client generated from the same interface description KEDA's scaler calls use):
//! queued work makes the scaler active and asks for work over slots per worker, rounded up;
//! once it is done, nothing is asked and the pool may go to zero.

use std::time::Duration;

use repovault_coordinator::model::Status;
use repovault_proto::keda as pb;
use repovault_proto::keda::external_scaler_client::ExternalScalerClient;
use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures::rich_repo;
use repovault_tests::gitserver::GitDaemon;

use super::observability::http_get;

fn scaled_object() -> pb::ScaledObjectRef {
    pb::ScaledObjectRef {
        name: "repovault-workers".into(),
        namespace: "backup".into(),
        scaler_metadata: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_asks_keda_for_workers_and_lets_the_pool_go_to_zero() {
    let mut c = Cluster::start_with_http(0).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    for name in ["one", "two", "three"] {
        rich_repo(src.path(), &format!("{name}.git")).unwrap();
        c.add_git_repo(&format!("acme/{name}"), &daemon.url(&format!("{name}.git")))
            .await
            .unwrap();
    }
    let mut keda = ExternalScalerClient::connect(c.url()).await.unwrap();
    let idle = keda.is_active(scaled_object()).await.unwrap().into_inner();
    assert!(!idle.result, "no work: not active");

    let mut queued = Vec::new();
    for name in ["one", "two", "three"] {
        queued.push(
            c.core()
                .backups
                .run_backup(&format!("acme/{name}"))
                .await
                .unwrap(),
        );
    }
    let spec = keda
        .get_metric_spec(scaled_object())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spec.metric_specs.len(), 1);
    assert_eq!(
        spec.metric_specs[0].metric_name,
        "repovault_desired_workers"
    );
    assert_eq!(spec.metric_specs[0].target_size_float, 1.0);
    let asked = |keda: &mut ExternalScalerClient<tonic::transport::Channel>| {
        let mut keda = keda.clone();
        async move {
            keda.get_metrics(pb::GetMetricsRequest {
                scaled_object_ref: Some(scaled_object()),
                // As KEDA names it: the trigger's index, then the metric.
                metric_name: "s0-repovault_desired_workers".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .metric_values[0]
                .metric_value_float
        }
    };
    // Three backups over the default two slots per worker: two workers.
    assert_eq!(asked(&mut keda).await, 2.0);
    assert!(
        keda.is_active(scaled_object())
            .await
            .unwrap()
            .into_inner()
            .result
    );
    let mut stream = keda
        .stream_is_active(scaled_object())
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().unwrap().result, "pushed");
    let metrics = http_get(c.http_addr().unwrap(), "/metrics").await;
    assert!(metrics.contains("repovault_desired_workers 2"), "{metrics}");
    let unknown = keda
        .get_metrics(pb::GetMetricsRequest {
            scaled_object_ref: Some(scaled_object()),
            metric_name: "s0-queue_length".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // A worker takes the work; once it is done nothing is asked.
    c.add_worker().await.unwrap();
    for b in &queued {
        let done = c
            .wait_backup(&b.id, Duration::from_secs(180))
            .await
            .unwrap();
        assert_eq!(done.status, Status::Completed, "{:?}", done.error);
    }
    assert_eq!(asked(&mut keda).await, 0.0);
    assert!(
        !keda
            .is_active(scaled_object())
            .await
            .unwrap()
            .into_inner()
            .result
    );
    c.shutdown().await;
}
