//! Least privilege on S3 with moto's IAM enforcement on: the workers' writer credential is an
//! IAM user that may read, create and list but not delete, the coordinator's maintainer one
//! that may do anything; backups, verification and a restore all work, and what the writer
//! must not do it cannot.

use opendal::{ErrorKind, Operator};
use repovault_common::storage::StorageConfig;
use repovault_tests::cluster::Cluster;
use repovault_tests::moto_iam::{
    CanonicalQueryProxy, IamUser, MotoIam, S3_WRITER_ACTIONS, bucket_policy,
};
use repovault_tests::object_stores::{ObjectStore, Peer};

use super::github_org::cli;
use super::object_storage::{backed_up_twice_and_restored, out};

const BUCKET: &str = "repovault";

/// Without a delete permission in its IAM policy, a writer still backs up, verifies and
/// restores through repovault; a delete through it is refused with 403 and leaves the object,
/// and an overwrite the way repovault writes (`If-None-Match: *`) is refused too.
///
/// A plain overwrite is not refused: an IAM policy refuses one only with a condition (a Deny
/// on `s3:PutObject` where `{"Null": {"s3:if-none-match": "true"}}`), and moto does not
/// evaluate policy conditions on S3 requests. Measured against moto 5.2: it knows no `Null`
/// operator, takes the condition as met, and the Deny then refuses the conditional creates as
/// well, so the writer could write nothing. The statement is left out, and the probe's report
/// of the plain overwrite the writer may do is asserted as the known gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_that_cannot_delete_backs_up_verifies_and_restores_on_s3() {
    let (store, mut root) = ObjectStore::with_bucket(Peer::Moto).await.unwrap();
    // Every S3 client reaches moto through the proxy, which fixes the query's encoding so that
    // moto checks the signature opendal made (see `moto_iam`).
    let proxy = CanonicalQueryProxy::start(&store.endpoint()).unwrap();
    let endpoint = proxy.endpoint();
    root.options.insert("endpoint".into(), endpoint.clone());
    let iam = MotoIam::new(&store.endpoint());
    let writer = iam
        .create_user("writer", &bucket_policy(BUCKET, S3_WRITER_ACTIONS))
        .await
        .unwrap();
    let maintainer = iam
        .create_user("maintainer", &bucket_policy(BUCKET, &["s3:*"]))
        .await
        .unwrap();

    // Enforcement is real: the harness's made-up key, taken until now, is refused after.
    let unknown = root.operator().unwrap();
    unknown
        .list("")
        .await
        .expect("moto takes any key before enforcement");
    iam.enforce_auth().await.unwrap();
    let refused = unknown
        .list("")
        .await
        .expect_err("an unknown key is refused once IAM is enforced");
    assert_eq!(refused.kind(), ErrorKind::PermissionDenied, "{refused}");
    assert!(
        refused.to_string().contains("InvalidAccessKeyId"),
        "{refused}"
    );

    // `storage add` probes both credentials and stores the location only if each can do its
    // role's work.
    let c = Cluster::start(1).await.unwrap();
    let env = [
        ("W_KEY", writer.access_key_id.as_str()),
        ("W_SECRET", writer.secret_access_key.as_str()),
        ("M_KEY", maintainer.access_key_id.as_str()),
        ("M_SECRET", maintainer.secret_access_key.as_str()),
    ];
    let added = cli(
        &c,
        &[
            "storage",
            "add",
            "client-s3",
            "--kind",
            "s3",
            "--bucket",
            BUCKET,
            "--region",
            "us-east-1",
            "--endpoint",
            &endpoint,
            "--access-key-env",
            "W_KEY",
            "--secret-key-env",
            "W_SECRET",
            "--maintainer-secret-env",
            "access_key_id=M_KEY",
            "--maintainer-secret-env",
            "secret_access_key=M_SECRET",
        ],
        &env,
    );
    let text = out(&added);
    assert_eq!(added.status.code(), Some(0), "{text}\n{}", store.log_text());
    let (writer_report, maintainer_report) = text
        .split_once("maintainer credential:")
        .unwrap_or_else(|| panic!("both credentials are reported: {text}"));
    assert!(
        writer_report.contains("writer credential: usable"),
        "{text}"
    );
    // Refused by IAM (AccessDenied), not for a bad signature, which would be a 403 too.
    let delete = writer_report
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("ok delete    refused, as it should be")
        })
        .unwrap_or_else(|| panic!("the writer's delete is refused: {text}"));
    assert!(
        delete.contains("status: 403") && delete.contains("AccessDenied"),
        "{delete}"
    );
    // The known gap (see above): the writer may overwrite with a plain PUT.
    assert!(
        writer_report.contains("!! overwrite allowed"),
        "the probe reports the writer's plain overwrite as allowed: {text}"
    );
    assert!(maintainer_report.starts_with(" usable"), "{text}");
    assert!(maintainer_report.contains("ok delete    ok"), "{text}");
    for secret in [&writer.secret_access_key, &maintainer.secret_access_key] {
        assert!(!text.contains(secret.as_str()), "no secret is printed");
    }

    // Backups (the second incremental), each verified, an on-demand verification and a
    // restore: the workers do all of it with the writer's credential.
    let (_source, first, _) = backed_up_twice_and_restored(&c, "client-s3").await;

    // The backups are in the bucket, and the writer cannot delete them.
    let writer_op = operator_as(&root, &writer);
    let maintainer_op = operator_as(&root, &maintainer);
    let pack = maintainer_op
        .list_with(&format!("{}/{}/data/", first.org_id, first.repo_id))
        .recursive(true)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.metadata().is_file())
        .expect("a pack in the bucket")
        .path()
        .to_string();
    let bytes = maintainer_op.read(&pack).await.unwrap().to_vec();
    let refused = writer_op
        .delete(&pack)
        .await
        .expect_err("the writer may not delete");
    assert_eq!(refused.kind(), ErrorKind::PermissionDenied, "{refused}");
    assert!(refused.to_string().contains("AccessDenied"), "{refused}");
    assert!(maintainer_op.exists(&pack).await.unwrap(), "the pack stays");

    // An overwrite as repovault writes (a create only if absent, `If-None-Match: *`) is
    // refused, and the pack keeps its bytes.
    assert!(
        writer_op.info().capability().write_with_if_not_exists,
        "repovault sends If-None-Match: * to S3"
    );
    let refused = writer_op
        .write_with(&pack, vec![0u8; bytes.len()])
        .if_not_exists(true)
        .await
        .expect_err("a create over an existing pack is refused");
    assert_eq!(refused.kind(), ErrorKind::ConditionNotMatch, "{refused}");
    assert_eq!(maintainer_op.read(&pack).await.unwrap().to_vec(), bytes);
    c.shutdown().await;
}

/// An operator on `root`'s bucket with `user`'s access key.
fn operator_as(root: &StorageConfig, user: &IamUser) -> Operator {
    let mut config = root.public_part();
    config
        .options
        .insert("access_key_id".into(), user.access_key_id.clone());
    config
        .options
        .insert("secret_access_key".into(), user.secret_access_key.clone());
    config.operator().unwrap()
}
