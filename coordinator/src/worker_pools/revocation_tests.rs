//! The worker pools' shell against a real core (memory store): a token created, a worker joined
//! with it holding a lease, the token revoked; and a restart that loads the tokens again.

use std::time::Duration;

use crate::coordinator::WorkerHello;
use crate::coordinator::testing::{core_with_repo, restart};
use crate::model::Status;
use crate::tasks::lease_state::TaskState;

use super::token_plan::TokenState;
use super::{JoinIdentity, JoinRefusal};

#[tokio::test]
async fn a_revoked_tokens_worker_is_forgotten_and_its_lease_requeued_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let (c, _repo) = core_with_repo(dir.path(), "a").await;
    let pools = &c.worker_pools;
    let (burst, secret) = pools.create("burst", None, "root").await.expect("create");
    assert_eq!((burst.state, burst.workers), (TokenState::Active, 0));
    assert_eq!(burst.record.created_by, "root");
    assert!(!burst.record.hash.contains(&secret.expose()[4..]));
    let (night, night_secret) = pools
        .create("night", Some(3600), "root")
        .await
        .expect("create");
    assert!(night.record.expires_at_ms.is_some());
    for bad in ["Burst", "bootstrap", ""] {
        assert!(pools.create(bad, None, "root").await.is_err(), "{bad}");
    }
    assert!(pools.create("burst", Some(1), "root").await.is_err());

    // A worker joins with the burst token and leases the backup.
    let identity = pools
        .door()
        .admit(secret.expose(), c.now_ms())
        .expect("admitted");
    assert_eq!(
        identity,
        JoinIdentity {
            pool: "burst".into(),
            token_id: Some(burst.record.id.clone()),
        }
    );
    let w = c
        .fleet
        .register_worker(WorkerHello {
            name: "b1".into(),
            slots: 1,
            identity: identity.clone(),
            ..Default::default()
        })
        .await;
    let listed = c.queue.workers.list();
    assert_eq!(
        (listed[0].pool.as_str(), listed[0].token_id.as_deref()),
        ("burst", Some(burst.record.id.as_str()))
    );
    c.backups.run_backup("acme/a").await.expect("backup");
    let task = c
        .queue
        .acquire(&w.worker_id, Default::default(), Duration::ZERO)
        .await
        .expect("acquire")
        .expect("leased");
    let listed = pools.list(Some("burst")).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].workers, 1);

    // Revoked: refused at the door, the worker forgotten, the lease back in the queue now
    // (long before its TTL), without a failure counted.
    let done = pools.revoke(&burst.record.id, "ops").await.expect("revoke");
    assert_eq!(done.workers, vec![w.worker_id.clone()]);
    assert_eq!(done.requeued, 1);
    assert_eq!(done.token.state, TokenState::Revoked);
    assert_eq!(done.token.record.revoked_by.as_deref(), Some("ops"));
    assert!(!pools.still_admits(&identity));
    assert!(matches!(
        pools.door().admit(secret.expose(), c.now_ms()),
        Err(JoinRefusal::Revoked { .. })
    ));
    assert!(c.queue.workers.list().is_empty());
    let t = c
        .queue
        .task_status(&task.lease.task_id)
        .await
        .expect("status")
        .expect("task");
    assert!(matches!(t.lease.state, TaskState::Pending { .. }), "{t:?}");
    assert_eq!(t.lease.failures, 0);
    let b = c
        .store
        .backup(&t.repo_id, &t.backup_subject().expect("a backup"))
        .await
        .expect("backup")
        .expect("record");
    assert_eq!(b.status, Status::Pending);
    // Its completion would be refused: the lease is not its own any more.
    assert!(
        c.queue
            .confirm_lease(&w.worker_id, &task.lease)
            .await
            .is_err()
    );
    // Revoking again changes nothing and finds nobody.
    let again = pools.revoke(&burst.record.id, "root").await.expect("again");
    assert_eq!((again.workers.len(), again.requeued), (0, 0));
    assert_eq!(again.token.record.revoked_by.as_deref(), Some("ops"));
    assert!(pools.revoke("jt0000000000", "root").await.is_err());
    assert!(pools.revoke("../x", "root").await.is_err());

    // A restarted coordinator knows every token from the store: the revoked one stays refused,
    // the other is admitted.
    let again = restart(&c).await;
    let door = again.worker_pools.door();
    assert!(matches!(
        door.admit(secret.expose(), again.now_ms()),
        Err(JoinRefusal::Revoked { .. })
    ));
    assert_eq!(
        door.admit(night_secret.expose(), again.now_ms())
            .map(|i| i.pool),
        Ok("night".to_string())
    );
    let all = again.worker_pools.list(None).await.expect("list");
    assert_eq!(all.len(), 2);
}
