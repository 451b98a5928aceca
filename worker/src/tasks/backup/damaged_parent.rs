//! Pack damage a read-back recorded, as a backup meets it: a damaged pack still under `data/`
//! refuses the backup (retryably: the coordinator takes it out), and once it is out the parent
//! snapshot is named only when every tree and blob it references is still indexed.

use super::{BackupJob, TaskError, blocking};

impl BackupJob {
    /// Whether this backup may build on its parent snapshot. Refuses (retryably) while a pack
    /// recorded as damaged is still under `data/`. Once such packs are out, the parent may
    /// reference trees that went with them, and rustic_core reuses a tree equal to the parent's
    /// without asking the index for it: so a repository with recorded pack damage has its
    /// parent's trees checked (a read of them; only then), and a parent that lost any is not
    /// named: the backup stores its whole tree again, repeats nothing, and is whole.
    pub(super) async fn parent_whole(&self) -> Result<bool, TaskError> {
        let damaged = self.refuse_damage_still_indexed().await?;
        let Some(parent) = self.parent_snapshot_id.clone() else {
            return Ok(true);
        };
        if damaged == 0 {
            return Ok(true);
        }
        let repo = self.repo.clone();
        let whole = blocking(move || Ok(repo.snapshot_fully_indexed(parent.as_str())?)).await?;
        if !whole {
            tracing::warn!(parent = %self.parent_snapshot_id.as_ref().map_or("", |p| p.as_str()), "the parent snapshot references blobs a damaged pack took out of the index: storing the whole tree anew");
        }
        Ok(whole)
    }

    /// A pack a read-back recorded as damaged must be out of the index before a backup stores
    /// anything, or the backup would deduplicate against it and be just as unrestorable. Taking
    /// it out needs delete rights, which a writer credential may lack; then the coordinator does
    /// it with its maintainer credential, and until it has (the pack still under `data/`) the
    /// backup refuses, retryably. One listing of the findings per backup, usually empty.
    async fn refuse_damage_still_indexed(&self) -> Result<usize, TaskError> {
        use repovault_common::repo::{DamageFinding, DamagedKind};
        let path = self.access.snapshot_path.trim_end_matches('/');
        let findings = DamageFinding::load_all(&self.ctx.storage, path)
            .await
            .map_err(|e| TaskError::retryable("reading the damage findings").with_source(e))?;
        for f in findings
            .iter()
            .filter(|f| f.kind == DamagedKind::Pack && f.id.len() > 2)
        {
            let pack = format!("{path}/data/{}/{}", &f.id[..2], f.id);
            let still = self
                .ctx
                .storage
                .exists(&pack)
                .await
                .map_err(|e| TaskError::retryable("checking a damaged pack").with_source(e))?;
            if still {
                return Err(TaskError::retryable(format!(
                    "pack {} was found damaged and is not out of the index yet (the coordinator takes it out): a backup now would reuse it",
                    &f.id[..12.min(f.id.len())]
                )));
            }
        }
        Ok(findings
            .iter()
            .filter(|f| f.kind == DamagedKind::Pack)
            .count())
    }
}
