//! A request's id fields are decoded where the request arrives: an empty or malformed id is
//! refused with `invalid_argument` naming the field, before any component sees it (a malformed
//! backup id used to reach the registry and come back as "not found").

use tonic::{Code, Request};

use repovault_proto::v1 as pb;
use repovault_proto::v1::admin_service_server::AdminService;
use repovault_proto::v1::worker_service_server::WorkerService;

use crate::coordinator::testing::core;
use crate::service::admin::AdminApi;
use crate::service::worker::WorkerApi;

/// `status` is an `invalid_argument` naming `field`.
fn refused(status: tonic::Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with(&format!("field {field}: ")),
        "{field}: {}",
        status.message()
    );
}

#[tokio::test]
async fn admin_calls_refuse_a_malformed_id_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = AdminApi {
        core: core(dir.path()).await,
    };
    let e = api
        .get_backup(Request::new(pb::GetBackupRequest {
            id: "../../etc".into(),
        }))
        .await
        .expect_err("a path is not a backup id");
    refused(e, "id");
    let e = api
        .verify_backup(Request::new(pb::VerifyBackupRequest { id: String::new() }))
        .await
        .expect_err("empty");
    refused(e, "id");
    let e = api
        .get_restore(Request::new(pb::GetRestoreRequest { id: "s1 s2".into() }))
        .await
        .expect_err("a space");
    refused(e, "id");
    let e = api
        .start_restore(Request::new(pb::StartRestoreRequest {
            backup_id: "-rf".into(),
            r#type: pb::RestoreType::FullRepo.into(),
            target: pb::RestoreTarget::Download.into(),
            ..Default::default()
        }))
        .await
        .expect_err("an option");
    refused(e, "backup_id");
    let e = api
        .run_drill(Request::new(pb::RunDrillRequest {
            org: "acme".into(),
            repo: String::new(),
            backup_id: "a,b".into(),
            from_copy: false,
        }))
        .await
        .expect_err("a comma");
    refused(e, "backup_id");
    let e = api
        .watch_task(Request::new(pb::WatchTaskRequest {
            task_id: "t/1".into(),
        }))
        .await
        .expect_err("a slash");
    refused(e, "task_id");
    // A well-formed id that names nothing is still "not found".
    let e = api
        .get_backup(Request::new(pb::GetBackupRequest {
            id: "r000000000000-nope".into(),
        }))
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
}

#[tokio::test]
async fn a_worker_call_refuses_a_malformed_lease_task_id_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = WorkerApi {
        core: core(dir.path()).await,
    };
    let e = api
        .confirm_lease(Request::new(pb::ConfirmLeaseRequest {
            worker_id: "wk2j9x0a1b2c".into(),
            lease: Some(pb::LeaseToken {
                task_id: "../t".into(),
                attempt: 1,
            }),
        }))
        .await
        .expect_err("a path is not a task id");
    refused(e, "lease.task_id");
}
