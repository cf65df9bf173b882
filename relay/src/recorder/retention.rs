//! Retention: recordings older than the team's retention period (90 days by default) are deleted,
//! each deletion logged and kept in SQL as a `deleted` row.

use std::time::Duration;

use object_store::ObjectStoreExt;
use tokio_util::sync::CancellationToken;

use super::RecorderContext;

/// Deletes every recording file that ended more than `retention` (the relay's period) ago, or more
/// than its team's own shorter period. Returns how many.
pub async fn sweep(ctx: &RecorderContext, retention: Duration) -> anyhow::Result<usize> {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let now = ctx.clock.now_ms();
    let cutoff = now.saturating_sub(retention_ms);
    let mut deleted = 0;
    for f in ctx
        .store
        .recording_files_past_retention(cutoff, now)
        .await?
    {
        match ctx
            .recordings
            .objects()
            .delete(&object_store::path::Path::from(f.object_key.as_str()))
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::error!(file = %f.id, error = %e, "retention could not delete a recording; will retry");
                continue;
            }
        }
        ctx.store.mark_recording_file_deleted(&f.id).await?;
        tracing::info!(
            file = %f.id,
            session = %f.session_id,
            team = %f.team_id,
            ended_at = f.ended_at.unwrap_or_default(),
            "recording deleted: older than the retention period"
        );
        deleted += 1;
    }
    Ok(deleted)
}

/// Runs [`sweep`] every `every` until `shutdown`; audit events older than `audit_retention` are
/// deleted in the same rhythm.
pub async fn run(
    ctx: RecorderContext,
    retention: Duration,
    audit_retention: Duration,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(e) = sweep(&ctx, retention).await {
            tracing::error!(error = %e, "retention sweep failed");
        }
        let audit_ms = i64::try_from(audit_retention.as_millis()).unwrap_or(i64::MAX);
        match ctx.store.purge_audit(audit_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                events = n,
                "audit events older than their retention deleted"
            ),
            Err(e) => tracing::error!(error = %e, "audit retention failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
