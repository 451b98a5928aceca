//! What operators and probes see: Prometheus metrics, the standard health service, gRPC
//! reflection, and the protocol version check at registration.

use repovault_proto::v1 as pb;
use repovault_proto::v1::worker_service_client::WorkerServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_reflection_and_protocol_version() {
    repovault_common::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let settings = repovault_cli::standalone_settings(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        Some("127.0.0.1:0".parse().unwrap()),
        "500ms",
    )
    .await
    .unwrap();
    let token = settings.join_token.clone();
    let h = repovault_coordinator::server::start(settings)
        .await
        .unwrap();
    h.core
        .registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    let repo = h
        .core
        .registry
        .add_repo("org/r", "git://127.0.0.1:1/r.git", None)
        .await
        .unwrap();
    h.core
        .backups
        .enqueue_backup(
            &repo,
            repovault_common::domain::BackupType::Full,
            repovault_common::domain::Trigger::Schedule,
            5,
        )
        .await
        .unwrap();

    // Metrics: queue depth by priority, with the queued task.
    let http = h.http_addr.unwrap();
    let body = http_get(http, "/metrics").await;
    assert!(
        body.contains("repovault_queue_depth{priority=\"5\"} 1"),
        "{body}"
    );
    assert!(body.contains("repovault_tasks_enqueued_total"), "{body}");
    assert!(body.contains("repovault_desired_worker_slots 1"), "{body}");
    assert!(http_get(http, "/healthz").await.contains("ok"));
    assert!(http_get(http, "/readyz").await.contains("200 OK"));

    // The standard health service answers for both services.
    let channel = tonic::transport::Endpoint::from_shared(h.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["repovault.v1.AdminService", "repovault.v1.WorkerService"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }

    // Health follows the storage: a storage root that cannot be listed is NOT_SERVING (the
    // server as a whole too) and /readyz says why; back in place, SERVING again.
    let storage = dir.path().join("storage");
    let aside = dir.path().join("storage-aside");
    std::fs::rename(&storage, &aside).unwrap();
    std::fs::write(&storage, b"not a directory").unwrap();
    let overall = |health: &mut tonic_health::pb::health_client::HealthClient<_>| {
        let mut health = health.clone();
        async move {
            health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .status
        }
    };
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while overall(&mut health).await != not_serving {
        assert!(
            std::time::Instant::now() < deadline,
            "still serving without storage"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ready = http_get(http, "/readyz").await;
    assert!(
        ready.contains("503") && ready.contains("snapshot storage"),
        "{ready}"
    );
    std::fs::remove_file(&storage).unwrap();
    std::fs::rename(&aside, &storage).unwrap();
    while overall(&mut health).await != serving {
        assert!(
            std::time::Instant::now() < deadline,
            "not serving again with storage back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(http_get(http, "/readyz").await.contains("200 OK"));

    // Reflection lists our services (what grpcurl uses).
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut refl = ServerReflectionClient::new(channel.clone());
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("no service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"repovault.v1.AdminService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"repovault.v1.WorkerService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
    // And in v1alpha, which many clients still speak.
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let mut alpha = AlphaClient::new(channel.clone());
    let req = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::ListServices(String::new())),
    };
    let resp = alpha
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let Some(AlphaResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("no v1alpha service list")
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "repovault.v1.AdminService"),
        "{:?}",
        list.service
    );

    // A worker of another protocol version is refused at registration: a newer one, and one of
    // version 1, whose leases carried strings where version 2 carries enums.
    let mut w = WorkerServiceClient::new(channel);
    for version in [repovault_proto::PROTOCOL_VERSION + 1, 1] {
        let mut req = tonic::Request::new(pb::RegisterWorkerRequest {
            protocol_version: version,
            name: "other".into(),
            slots: 1,
            capabilities: vec![],
            ..Default::default()
        });
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", token.expose()).parse().unwrap(),
        );
        let e = w.register_worker(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(e.message().contains("protocol version"), "{}", e.message());
    }
    h.shutdown().await;
}

pub(super) async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// `--log-format json` (or `REPOVAULT_LOG_FORMAT`): every line the coordinator writes is one
/// JSON object with a level and fields, and nothing carries a terminal colour code (stderr here
/// is a file, not a terminal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_logs_json_lines_without_colour() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("coordinator.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_repovault-test-process"))
        .args(["--log-format", "json", "standalone", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--workers",
            "0",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .env_remove("REPOVAULT_LOG_FORMAT")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _guard = repovault_tests::process::ChildGuard { child };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&log_path).unwrap();
        if text.contains("coordinator serving") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never served:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(!text.contains('\u{1b}'), "colour codes in a file:\n{text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{text}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}
