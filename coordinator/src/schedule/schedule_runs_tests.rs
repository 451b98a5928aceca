use std::time::Duration;

use repovault_common::crypto::MasterKey;
use repovault_common::secret::Secret;
use repovault_common::storage::StorageConfig;
use repovault_common::timing::Timing;

use super::*;
use crate::clock::ManualClock;
use crate::coordinator::{Coordinator, CoordinatorParts};
use crate::kv::{KvBackend, MemoryKv};
use crate::model::OnPushHook;
use crate::schedule::push_backups::WebhookOutcome;
use crate::schedule::webhook_bursts as webhooks;
use crate::secrets::SealContext;
use crate::store::Store;

fn utc(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("time")
        .timestamp_millis()
}

async fn core(
    kv: Arc<dyn KvBackend>,
    master: &MasterKey,
    dir: &std::path::Path,
    clock: Arc<ManualClock>,
) -> Arc<Coordinator> {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    Coordinator::new(
        CoordinatorParts {
            store: Store::new(kv),
            clock,
            storage_config: StorageConfig::fs(dir.display().to_string()),
            master: master.clone(),
            timing: Timing::new(Duration::from_secs(5)).expect("timing"),
            max_attempts: 3,
        },
        tx,
    )
    .await
    .expect("core")
}

async fn cancel_all(c: &Coordinator) {
    for (t, _) in c.queue.queue_snapshot().await {
        c.queue.cancel_task(&t.id, "test").await.expect("cancel");
    }
}

#[tokio::test]
async fn once_per_slot_across_a_restart_skips_busy_and_catches_up_the_latest_missed() {
    let dir = tempfile::tempdir().expect("dir");
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    let master = MasterKey::generate();
    // 10:59: past every offset of the 10:00 hourly slot (spread over its first 30 min).
    let clock = Arc::new(ManualClock::new(utc("2026-11-23T10:59:00Z")));
    let c = core(kv.clone(), &master, dir.path(), clock.clone()).await;
    c.registry
        .add_org("acme", crate::model::Provider::Git)
        .await
        .expect("org");
    for i in 0..3 {
        c.registry
            .add_repo(&format!("acme/r{i}"), &format!("file:///src/r{i}"), None)
            .await
            .expect("repo");
    }
    // No schedule: nothing.
    assert_eq!(
        c.schedules
            .materialise_schedules()
            .await
            .expect("tick")
            .enqueued,
        0
    );
    c.schedules
        .set_org_schedule("acme", Some("hourly"), Some("Europe/Berlin"), None, None)
        .await
        .expect("set");
    let r = c.schedules.materialise_schedules().await.expect("tick");
    assert_eq!((r.scheduled, r.enqueued, r.skipped), (3, 3, 0));
    assert_eq!(
        c.schedules
            .materialise_schedules()
            .await
            .expect("tick")
            .enqueued,
        0
    );
    let b = c
        .registry
        .list_backups(Some("acme/r0"))
        .await
        .expect("backups");
    assert_eq!(b.len(), 1);
    assert_eq!(
        (b[0].trigger, b[0].backup_type),
        (Trigger::Schedule, BackupType::Full)
    );
    assert_eq!(b[0].priority, PRIORITY_SCHEDULED);

    // The next slot comes while those still wait: skipped, and recorded.
    clock.set(utc("2026-11-23T11:59:00Z"));
    let r = c.schedules.materialise_schedules().await.expect("tick");
    assert_eq!((r.enqueued, r.skipped), (0, 3));
    let repo = c.registry.repo_named("acme/r0").await.expect("repo");
    let st = c.store.schedule_state(&repo.id).await.expect("state");
    assert_eq!(st.skipped_slots, vec![utc("2026-11-23T11:00:00Z")]);

    // A restart in the same slot: nothing runs twice.
    cancel_all(&c).await;
    c.stopping.cancel();
    drop(c);
    let c = core(kv.clone(), &master, dir.path(), clock.clone()).await;
    assert_eq!(
        c.schedules
            .materialise_schedules()
            .await
            .expect("tick")
            .enqueued,
        0
    );

    // Down from 11:59 to 14:59: only the 14:00 slot runs, once.
    clock.set(utc("2026-11-23T14:59:00Z"));
    assert_eq!(
        c.schedules
            .materialise_schedules()
            .await
            .expect("tick")
            .enqueued,
        3
    );
    assert_eq!(
        c.store
            .schedule_state(&repo.id)
            .await
            .expect("state")
            .last_slot_ms,
        Some(utc("2026-11-23T14:00:00Z"))
    );
    cancel_all(&c).await;
    // Down across 15:00, back at 16:00:00 before any offset: the missed 15:00 runs at once.
    clock.set(utc("2026-11-23T16:00:00Z"));
    let r = c.schedules.materialise_schedules().await.expect("tick");
    assert_eq!(r.enqueued, 3);
    assert_eq!(
        c.store
            .schedule_state(&repo.id)
            .await
            .expect("state")
            .last_slot_ms,
        Some(utc("2026-11-23T15:00:00Z"))
    );
    cancel_all(&c).await;

    // A repository's own schedule wins; `inherit` goes back to the organisation's.
    c.schedules
        .set_repo_schedule("acme/r1", "0 3 * * *")
        .await
        .expect("set");
    clock.set(utc("2026-11-23T16:59:00Z"));
    let r = c.schedules.materialise_schedules().await.expect("tick");
    assert_eq!(r.enqueued, 2);
    cancel_all(&c).await;

    // A disconnected organisation is not scheduled.
    let mut org = c.registry.org_named("acme").await.expect("org");
    org.disconnected = true;
    let mut batch = Batch::default();
    batch.org(&org);
    c.store.apply(batch).await.expect("apply");
    clock.set(utc("2026-11-23T17:59:00Z"));
    assert_eq!(
        c.schedules
            .materialise_schedules()
            .await
            .expect("tick")
            .scheduled,
        0
    );
}

#[tokio::test]
async fn a_burst_of_signed_pushes_gives_one_backup_within_the_delay() {
    let dir = tempfile::tempdir().expect("dir");
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    let master = MasterKey::generate();
    let t0 = utc("2026-11-23T10:00:00Z");
    let clock = Arc::new(ManualClock::new(t0));
    let c = core(kv, &master, dir.path(), clock.clone()).await;
    c.registry
        .add_org("acme", crate::model::Provider::Git)
        .await
        .expect("org");
    let mut repo = c
        .registry
        .add_repo("acme/app", "file:///src/app", None)
        .await
        .expect("repo");
    // As `repo set --on-push` leaves it (the forge call is the e2e test's).
    let secret = Secret::new("hook-secret");
    repo.on_push = Some(OnPushHook {
        hook_id: 1,
        sealed_secret: c
            .catalog
            .secrets
            .seal(SealContext::WebhookSecret(&repo.id), &secret),
    });
    let mut batch = Batch::default();
    batch.repo(&repo);
    c.store.apply(batch).await.expect("apply");

    let body = serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main",
        "repository": {"id": 7, "default_branch": "main"},
    }))
    .expect("json");
    let sig = webhooks::sign(b"hook-secret", &body);
    let id = Some(repo.id.as_str());
    // Unsigned, wrongly signed, signed with another secret: refused.
    for bad in [
        None,
        Some("sha256=00"),
        Some(webhooks::sign(b"x", &body).as_str()),
    ] {
        let o = c
            .schedules
            .webhook_delivery(id, "push", bad, &body)
            .await
            .expect("delivery");
        assert!(matches!(o, WebhookOutcome::Refused(_)), "{o:?}");
    }
    // Another branch and a ping: ignored.
    let other = serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/dev",
        "repository": {"id": 7, "default_branch": "main"},
    }))
    .expect("json");
    let o = c
        .schedules
        .webhook_delivery(
            id,
            "push",
            Some(&webhooks::sign(b"hook-secret", &other)),
            &other,
        )
        .await
        .expect("delivery");
    assert!(matches!(o, WebhookOutcome::Ignored(_)));
    let o = c
        .schedules
        .webhook_delivery(id, "ping", Some(&sig), &body)
        .await
        .expect("delivery");
    assert!(matches!(o, WebhookOutcome::Ignored(_)));

    // Ten pushes 10 s apart: one burst.
    for i in 0..10 {
        let o = c
            .schedules
            .webhook_delivery(id, "push", Some(&sig), &body)
            .await
            .expect("delivery");
        assert_eq!(o, WebhookOutcome::Accepted { opened: i == 0 });
        clock.advance(Duration::from_secs(10));
    }
    // Without the hook URL's `repo`: refused.
    let o = c
        .schedules
        .webhook_delivery(None, "push", Some(&sig), &body)
        .await;
    assert_eq!(
        o.expect("delivery"),
        WebhookOutcome::Refused("no repository with push backups".into())
    );
    assert_eq!(c.schedules.start_push_backups().await.expect("start"), 0);
    // Started at the latest one push tick before the delay ends, so the loop's look every
    // PUSH_TICK starts it within the delay of the first push.
    clock.set(t0 + ms(DEFAULT_PUSH_DELAY) - ms(PUSH_TICK));
    assert_eq!(c.schedules.start_push_backups().await.expect("start"), 1);
    assert_eq!(c.schedules.start_push_backups().await.expect("start"), 0);
    let b = c
        .registry
        .list_backups(Some("acme/app"))
        .await
        .expect("backups");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].trigger, Trigger::Push);
}

/// `repo set --schedule none` takes one repository out of its organisation's schedule (the
/// runs, the health view's next run); `inherit` puts it back.
#[tokio::test]
async fn a_repository_taken_out_of_its_organisations_schedule_is_not_run() {
    let dir = tempfile::tempdir().expect("dir");
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    let clock = Arc::new(ManualClock::new(utc("2026-11-23T10:59:00Z")));
    let c = core(kv, &MasterKey::generate(), dir.path(), clock.clone()).await;
    c.registry
        .add_org("acme", crate::model::Provider::Git)
        .await
        .expect("org");
    for n in ["kept", "out"] {
        c.registry
            .add_repo(&format!("acme/{n}"), &format!("file:///src/{n}"), None)
            .await
            .expect("repo");
    }
    c.schedules
        .set_org_schedule("acme", Some("hourly"), None, None, None)
        .await
        .expect("set");
    let out = c
        .schedules
        .set_repo_schedule("acme/out", "none")
        .await
        .expect("none is accepted");
    assert_eq!(out.schedule.as_deref(), Some("none"));
    let r = c.schedules.materialise_schedules().await.expect("tick");
    assert_eq!((r.scheduled, r.enqueued), (1, 1));
    assert!(
        c.registry
            .list_backups(Some("acme/out"))
            .await
            .expect("list")
            .is_empty()
    );
    let rows = c.health.health(Some("acme")).await.expect("health");
    let next = |name: &str| {
        rows.iter()
            .find(|(r, _, _)| r.name == name)
            .and_then(|(_, _, h)| h.next_run_at_ms)
    };
    assert!(next("kept").is_some() && next("out").is_none());
    assert_eq!(
        c.schedules
            .repo_schedule(&c.registry.repo_named("acme/out").await.expect("repo"))
            .await
            .expect("schedule"),
        None
    );

    cancel_all(&c).await;
    c.schedules
        .set_repo_schedule("acme/out", "inherit")
        .await
        .expect("inherit");
    clock.set(utc("2026-11-23T11:59:00Z"));
    let r = c.schedules.materialise_schedules().await.expect("tick");
    assert_eq!(r.enqueued, 2, "both repositories run again");
}
