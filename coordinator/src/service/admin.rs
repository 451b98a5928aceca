//! AdminService: what the CLI drives.

use crate::model::{BackupId, RestoreId};
use crate::verification::drills::DrillSource;
use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use repovault_common::domain::{BackupType, Trigger};
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;
use repovault_proto::v1::admin_service_server::AdminService;

use crate::coordinator::Coordinator;

use super::{
    admin_escrow, admin_fleet, admin_health, admin_lists, admin_orgs, admin_storage, admin_streams,
    convert, restore_links,
};

pub struct AdminApi {
    pub core: Arc<Coordinator>,
}

pub(super) fn token(t: &str) -> Option<Secret> {
    (!t.is_empty()).then(|| Secret::new(t))
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn add_org(
        &self,
        req: Request<pb::AddOrgRequest>,
    ) -> Result<Response<pb::AddOrgResponse>, Status> {
        Ok(Response::new(
            admin_orgs::admit_org(&self.core, req.into_inner()).await?,
        ))
    }

    async fn update_org_credential(
        &self,
        req: Request<pb::UpdateOrgCredentialRequest>,
    ) -> Result<Response<pb::UpdateOrgCredentialResponse>, Status> {
        let r = admin_orgs::update_credential(&self.core, req.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn update_repo_credential(
        &self,
        req: Request<pb::UpdateRepoCredentialRequest>,
    ) -> Result<Response<pb::UpdateRepoCredentialResponse>, Status> {
        let r = admin_orgs::update_repo_credential(&self.core, req.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn get_org(
        &self,
        req: Request<pb::GetOrgRequest>,
    ) -> Result<Response<pb::GetOrgResponse>, Status> {
        let org = self.core.registry.org_named(&req.into_inner().org).await?;
        let repos = self
            .core
            .store
            .org_repos(&org.id)
            .await
            .map_err(crate::error::CoreError::from)?;
        let count =
            |f: fn(&crate::model::RepoRecord) -> bool| repos.iter().filter(|r| f(r)).count() as u64;
        Ok(Response::new(pb::GetOrgResponse {
            org: Some(convert::org(&org)),
            repos: repos.len() as u64,
            archived: count(|r| r.archived),
            deleted: count(|r| r.deleted),
        }))
    }

    async fn sync_org(
        &self,
        req: Request<pb::SyncOrgRequest>,
    ) -> Result<Response<pb::SyncOrgResponse>, Status> {
        let report = self.core.forge.sync_org(&req.into_inner().org).await?;
        Ok(Response::new(convert::sync(&report)))
    }

    async fn list_orgs(
        &self,
        req: Request<pb::ListOrgsRequest>,
    ) -> Result<Response<pb::ListOrgsResponse>, Status> {
        Ok(Response::new(
            admin_lists::orgs(&self.core, req.into_inner()).await?,
        ))
    }

    async fn export_org_key(
        &self,
        req: Request<pb::ExportOrgKeyRequest>,
    ) -> Result<Response<pb::ExportOrgKeyResponse>, Status> {
        let (org, key) = self
            .core
            .registry
            .export_org_key(&req.into_inner().org)
            .await?;
        Ok(Response::new(pb::ExportOrgKeyResponse {
            org_id: org.id.into(),
            key: key.expose().to_string(),
        }))
    }

    async fn add_repo(
        &self,
        req: Request<pb::AddRepoRequest>,
    ) -> Result<Response<pb::AddRepoResponse>, Status> {
        let r = req.into_inner();
        let full = format!("{}/{}", r.org, r.name);
        let repo = self
            .core
            .registry
            .add_repo(&full, &r.url, token(&r.token))
            .await?;
        Ok(Response::new(pb::AddRepoResponse {
            repo: Some(convert::repo(&repo, &Default::default())),
        }))
    }

    async fn list_repos(
        &self,
        req: Request<pb::ListReposRequest>,
    ) -> Result<Response<pb::ListReposResponse>, Status> {
        Ok(Response::new(
            admin_lists::repos(&self.core, req.into_inner()).await?,
        ))
    }

    async fn set_org_schedule(
        &self,
        req: Request<pb::SetOrgScheduleRequest>,
    ) -> Result<Response<pb::SetOrgScheduleResponse>, Status> {
        let r = req.into_inner();
        let org = self
            .core
            .schedules
            .set_org_schedule(
                &r.org,
                r.schedule.as_deref(),
                r.timezone.as_deref(),
                r.full_every_days,
                r.drill.as_deref(),
            )
            .await?;
        Ok(Response::new(pb::SetOrgScheduleResponse {
            org: Some(convert::org(&org)),
        }))
    }

    async fn set_repo_schedule(
        &self,
        req: Request<pb::SetRepoScheduleRequest>,
    ) -> Result<Response<pb::SetRepoScheduleResponse>, Status> {
        let r = req.into_inner();
        let mut repo = self.core.registry.repo_named(&r.repo).await?;
        if let Some(s) = &r.schedule {
            repo = self.core.schedules.set_repo_schedule(&r.repo, s).await?;
        }
        if let Some(on) = r.on_push {
            repo = self.core.schedules.set_repo_on_push(&r.repo, on).await?;
        }
        let stats = self
            .core
            .store
            .stats(&repo.id)
            .await
            .map_err(crate::error::CoreError::from)?;
        let view = self.core.schedules.repo_schedule_view(&repo).await?;
        let out = convert::repo_with_schedule(convert::repo(&repo, &stats), view);
        Ok(Response::new(pb::SetRepoScheduleResponse {
            repo: Some(out),
        }))
    }

    async fn run_backup(
        &self,
        req: Request<pb::RunBackupRequest>,
    ) -> Result<Response<pb::RunBackupResponse>, Status> {
        let req = req.into_inner();
        let backup_type = convert::enum_field_or(req.r#type, "type", BackupType::Full)?;
        let b = self
            .core
            .backups
            .run_backup_of_type(&req.repo, backup_type)
            .await?;
        Ok(Response::new(pb::RunBackupResponse {
            backup: Some(convert::backup(&b)),
        }))
    }

    async fn list_backups(
        &self,
        req: Request<pb::ListBackupsRequest>,
    ) -> Result<Response<pb::ListBackupsResponse>, Status> {
        Ok(Response::new(
            admin_lists::backups(&self.core, req.into_inner()).await?,
        ))
    }

    async fn get_backup(
        &self,
        req: Request<pb::GetBackupRequest>,
    ) -> Result<Response<pb::GetBackupResponse>, Status> {
        let id: BackupId = convert::id_field(&req.into_inner().id, "id")?;
        let b = self.core.registry.get_backup(&id).await?;
        Ok(Response::new(pb::GetBackupResponse {
            backup: admin_escrow::backups(&self.core, std::slice::from_ref(&b))
                .await?
                .pop(),
        }))
    }

    async fn list_audit(
        &self,
        req: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        Ok(Response::new(
            admin_lists::audit(&self.core, req.into_inner()).await?,
        ))
    }

    async fn browse_backup(
        &self,
        req: Request<pb::BrowseBackupRequest>,
    ) -> Result<Response<pb::BrowseBackupResponse>, Status> {
        let req = req.into_inner();
        let id: BackupId = convert::id_field(&req.id, "id")?;
        let found = self.core.registry.browse_backup(&id, &req.path).await?;
        Ok(Response::new(convert::browsed(found)))
    }

    async fn start_restore(
        &self,
        req: Request<pb::StartRestoreRequest>,
    ) -> Result<Response<pb::StartRestoreResponse>, Status> {
        Ok(Response::new(
            restore_links::start(&self.core, req.into_inner()).await?,
        ))
    }

    async fn mint_download_link(
        &self,
        req: Request<pb::MintDownloadLinkRequest>,
    ) -> Result<Response<pb::MintDownloadLinkResponse>, Status> {
        let r = req.into_inner();
        let id: RestoreId = convert::id_field(&r.id, "id")?;
        let ttl = restore_links::link_ttl_ms(r.expires_seconds)?.unwrap_or(
            i64::try_from(repovault_common::links::DEFAULT_LINK_TTL.as_millis())
                .unwrap_or(i64::MAX),
        );
        let (restore, link) = self
            .core
            .downloads
            .mint_download_link(&id, self.core.now_ms().saturating_add(ttl))
            .await?;
        Ok(Response::new(pb::MintDownloadLinkResponse {
            restore: Some(restore_links::restore_with_link(&self.core, &restore).await),
            url: link.url,
            expires_at: repovault_common::links::format_unix(link.expires_at),
        }))
    }

    async fn get_restore(
        &self,
        req: Request<pb::GetRestoreRequest>,
    ) -> Result<Response<pb::GetRestoreResponse>, Status> {
        let id: RestoreId = convert::id_field(&req.into_inner().id, "id")?;
        let r = self.core.restores.get_restore(&id).await?;
        Ok(Response::new(pb::GetRestoreResponse {
            restore: Some(restore_links::restore_with_link(&self.core, &r).await),
        }))
    }

    async fn list_restores(
        &self,
        req: Request<pb::ListRestoresRequest>,
    ) -> Result<Response<pb::ListRestoresResponse>, Status> {
        let page = restore_links::list(&self.core, req.into_inner()).await?;
        Ok(Response::new(page))
    }

    async fn cancel_restore(
        &self,
        req: Request<pb::CancelRestoreRequest>,
    ) -> Result<Response<pb::CancelRestoreResponse>, Status> {
        let id: RestoreId = convert::id_field(&req.into_inner().id, "id")?;
        let r = self.core.restores.cancel_restore(&id).await?;
        Ok(Response::new(pb::CancelRestoreResponse {
            restore: Some(convert::restore(&r)),
        }))
    }

    type DownloadRestoreStream = ReceiverStream<Result<pb::DownloadChunk, Status>>;

    async fn download_restore(
        &self,
        req: Request<pb::DownloadRestoreRequest>,
    ) -> Result<Response<Self::DownloadRestoreStream>, Status> {
        admin_streams::download_stream(&self.core, &convert::id_field(&req.into_inner().id, "id")?)
            .await
    }

    type WatchTaskStream = ReceiverStream<Result<pb::TaskProgress, Status>>;

    async fn watch_task(
        &self,
        req: Request<pb::WatchTaskRequest>,
    ) -> Result<Response<Self::WatchTaskStream>, Status> {
        admin_streams::watch_stream(
            &self.core,
            convert::id_field(&req.into_inner().task_id, "task_id")?,
        )
        .await
    }

    async fn rebuild_catalog(
        &self,
        _: Request<pb::RebuildCatalogRequest>,
    ) -> Result<Response<pb::RebuildCatalogResponse>, Status> {
        let (repositories, backups) = self.core.catalog.rebuild_catalog().await?;
        tracing::info!(repositories, backups, "catalog rebuilt from storage");
        Ok(Response::new(pb::RebuildCatalogResponse {
            repositories,
            backups,
        }))
    }

    async fn list_workers(
        &self,
        _: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        Ok(Response::new(admin_fleet::workers(&self.core)))
    }

    async fn create_worker_token(
        &self,
        req: Request<pb::CreateWorkerTokenRequest>,
    ) -> Result<Response<pb::CreateWorkerTokenResponse>, Status> {
        let by = caller_name(&req);
        admin_fleet::create_token(&self.core, req.into_inner(), &by).await
    }

    async fn list_worker_tokens(
        &self,
        req: Request<pb::ListWorkerTokensRequest>,
    ) -> Result<Response<pb::ListWorkerTokensResponse>, Status> {
        admin_fleet::list_tokens(&self.core, req.into_inner()).await
    }

    async fn revoke_worker_token(
        &self,
        req: Request<pb::RevokeWorkerTokenRequest>,
    ) -> Result<Response<pb::RevokeWorkerTokenResponse>, Status> {
        let by = caller_name(&req);
        admin_fleet::revoke_token(&self.core, req.into_inner(), &by).await
    }

    async fn get_queue(
        &self,
        req: Request<pb::GetQueueRequest>,
    ) -> Result<Response<pb::GetQueueResponse>, Status> {
        admin_fleet::queue(&self.core, req.into_inner()).await
    }

    // Retention, deletion, escrow: `maintenance/`.

    async fn delete_backup(
        &self,
        req: Request<pb::DeleteBackupRequest>,
    ) -> Result<Response<pb::DeleteBackupResponse>, Status> {
        Ok(Response::new(
            admin_escrow::delete_backup(&self.core, req.into_inner()).await?,
        ))
    }

    async fn purge_repo(
        &self,
        req: Request<pb::PurgeRepoRequest>,
    ) -> Result<Response<pb::PurgeResponse>, Status> {
        Ok(Response::new(
            admin_escrow::purge_repo(&self.core, req.into_inner()).await?,
        ))
    }

    async fn purge_org(
        &self,
        req: Request<pb::PurgeOrgRequest>,
    ) -> Result<Response<pb::PurgeResponse>, Status> {
        Ok(Response::new(
            admin_escrow::purge_org(&self.core, req.into_inner()).await?,
        ))
    }

    async fn set_org_connected(
        &self,
        req: Request<pb::SetOrgConnectedRequest>,
    ) -> Result<Response<pb::SetOrgConnectedResponse>, Status> {
        Ok(Response::new(
            admin_escrow::set_org_connected(&self.core, req.into_inner()).await?,
        ))
    }

    async fn add_storage_location(
        &self,
        req: Request<pb::AddStorageLocationRequest>,
    ) -> Result<Response<pb::AddStorageLocationResponse>, Status> {
        Ok(Response::new(
            admin_storage::add(&self.core, req.into_inner()).await?,
        ))
    }

    async fn list_storage_locations(
        &self,
        _req: Request<pb::ListStorageLocationsRequest>,
    ) -> Result<Response<pb::ListStorageLocationsResponse>, Status> {
        Ok(Response::new(admin_storage::list(&self.core).await?))
    }

    async fn check_storage_location(
        &self,
        req: Request<pb::CheckStorageLocationRequest>,
    ) -> Result<Response<pb::CheckStorageLocationResponse>, Status> {
        Ok(Response::new(
            admin_storage::check(&self.core, req.into_inner()).await?,
        ))
    }

    async fn get_storage_lifecycle(
        &self,
        req: Request<pb::GetStorageLifecycleRequest>,
    ) -> Result<Response<pb::GetStorageLifecycleResponse>, Status> {
        Ok(Response::new(
            admin_storage::lifecycle(&self.core, req.into_inner()).await?,
        ))
    }

    async fn move_org_storage(
        &self,
        req: Request<pb::MoveOrgStorageRequest>,
    ) -> Result<Response<pb::MoveOrgStorageResponse>, Status> {
        Ok(Response::new(
            admin_storage::move_org(&self.core, req.into_inner()).await?,
        ))
    }

    async fn set_org_storage(
        &self,
        req: Request<pb::SetOrgStorageRequest>,
    ) -> Result<Response<pb::SetOrgStorageResponse>, Status> {
        Ok(Response::new(
            admin_storage::set_org(&self.core, req.into_inner()).await?,
        ))
    }

    async fn set_retention(
        &self,
        req: Request<pb::SetRetentionRequest>,
    ) -> Result<Response<pb::SetRetentionResponse>, Status> {
        // The guard put the caller there; without one, the least role.
        let role = req
            .extensions()
            .get::<crate::admin_roles::Caller>()
            .map_or(crate::admin_roles::Role::Viewer, |c| c.role);
        let (r, detail) = admin_escrow::set_retention(&self.core, req.into_inner(), role).await?;
        let mut response = Response::new(r);
        if let Some(d) = detail {
            response
                .extensions_mut()
                .insert(crate::audit::AuditDetail(d));
        }
        Ok(response)
    }

    async fn get_retention(
        &self,
        req: Request<pb::GetRetentionRequest>,
    ) -> Result<Response<pb::GetRetentionResponse>, Status> {
        Ok(Response::new(
            admin_escrow::get_retention(&self.core, req.into_inner()).await?,
        ))
    }

    async fn enable_escrow(
        &self,
        req: Request<pb::EnableEscrowRequest>,
    ) -> Result<Response<pb::EnableEscrowResponse>, Status> {
        Ok(Response::new({
            let by = caller_name(&req);
            admin_escrow::enable_escrow(&self.core, req.into_inner(), &by).await?
        }))
    }

    async fn release_escrow(
        &self,
        req: Request<pb::ReleaseEscrowRequest>,
    ) -> Result<Response<pb::ReleaseEscrowResponse>, Status> {
        Ok(Response::new({
            let by = caller_name(&req);
            admin_escrow::release_escrow(&self.core, req.into_inner(), &by).await?
        }))
    }

    async fn list_escrows(
        &self,
        req: Request<pb::ListEscrowsRequest>,
    ) -> Result<Response<pb::ListEscrowsResponse>, Status> {
        Ok(Response::new(
            admin_escrow::list_escrows(&self.core, req.into_inner()).await?,
        ))
    }

    async fn get_health(
        &self,
        req: Request<pb::GetHealthRequest>,
    ) -> Result<Response<pb::GetHealthResponse>, Status> {
        Ok(Response::new(
            admin_health::health(&self.core, req.into_inner()).await?,
        ))
    }

    async fn get_timeline(
        &self,
        req: Request<pb::GetTimelineRequest>,
    ) -> Result<Response<pb::GetTimelineResponse>, Status> {
        Ok(Response::new(
            admin_health::timeline(&self.core, req.into_inner()).await?,
        ))
    }

    async fn verify_backup(
        &self,
        req: Request<pb::VerifyBackupRequest>,
    ) -> Result<Response<pb::VerifyBackupResponse>, Status> {
        let id: BackupId = convert::id_field(&req.into_inner().id, "id")?;
        let (b, task_id) = self.core.verification.verify_backup(&id).await?;
        Ok(Response::new(pb::VerifyBackupResponse {
            backup: admin_escrow::backups(&self.core, std::slice::from_ref(&b))
                .await?
                .pop(),
            task_id: task_id.into(),
        }))
    }

    async fn run_drill(
        &self,
        req: Request<pb::RunDrillRequest>,
    ) -> Result<Response<pb::RunDrillResponse>, Status> {
        let r = req.into_inner();
        let backup_id: Option<BackupId> = convert::optional_id_field(&r.backup_id, "backup_id")?;
        let d = self
            .core
            .drills
            .run_drill(
                &r.org,
                Some(r.repo.as_str()).filter(|s| !s.is_empty()),
                backup_id.as_ref(),
                Trigger::Manual,
                if r.from_copy {
                    DrillSource::Copy
                } else {
                    DrillSource::Primary
                },
            )
            .await?;
        Ok(Response::new(pb::RunDrillResponse {
            drill: Some(convert::drill(&d)),
        }))
    }

    async fn list_drills(
        &self,
        req: Request<pb::ListDrillsRequest>,
    ) -> Result<Response<pb::ListDrillsResponse>, Status> {
        Ok(Response::new(
            admin_lists::drills(&self.core, req.into_inner()).await?,
        ))
    }
}

/// The caller the admin guard resolved (its configured token name; `local` without tokens).
fn caller_name<T>(req: &Request<T>) -> String {
    req.extensions()
        .get::<crate::admin_roles::Caller>()
        .map_or_else(|| "local".to_string(), |c| c.name.clone())
}
