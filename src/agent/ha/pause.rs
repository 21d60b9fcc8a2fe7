//! `pgrepl pause` / `pgrepl resume`: maintenance mode. While paused, the
//! supervisor's HA task takes no automatic action (no failover, rejoin,
//! slot recreation or re-clone), as Patroni's pause does; the supervisor
//! still restarts a crashed postmaster in place, and moves run by hand
//! still work. The flag lives in the state file, so it outlasts restarts.

use std::time::Duration;

use crate::error::Result;
use crate::ops::control::wait_move_lock;
use crate::store::ctx::Ctx;

/// Turn automatic actions off. Waits for an automatic action already under
/// way (it holds the move lock), so none starts after this returns.
pub(crate) async fn pause(ctx: &Ctx, reason: Option<&str>, out: &crate::output::Output) -> Result<()> {
    let _lock = wait_move_lock(ctx, Duration::from_secs(60)).await?;
    let since = crate::domain::time::rfc3339(crate::domain::time::now_unix());
    let text = match reason {
        Some(r) => format!("since {since}: {r}"),
        None => format!("since {since}"),
    };
    let before = ctx.store().update(|s| s.paused.replace(text.clone()))?;
    match before {
        Some(old) => {
            out.info(format!("automatic failover was already paused ({old}); `pgrepl resume` turns it back on"))
        }
        None => {
            out.info(format!(
                "automatic failover paused ({text}): no failover, rejoin or re-clone happens by itself until `pgrepl resume`"
            ));
            crate::ops::hooks::fire(ctx, crate::ops::hooks::Event::Pause, "-", &text, out).await;
        }
    }
    Ok(())
}

/// Turn automatic actions back on.
pub(crate) async fn resume(ctx: &Ctx, out: &crate::output::Output) -> Result<()> {
    let _lock = wait_move_lock(ctx, Duration::from_secs(60)).await?;
    match ctx.store().update(|s| s.paused.take())? {
        Some(was) => {
            out.info(format!("automatic failover resumed (it was paused {was})"));
            crate::ops::hooks::fire(ctx, crate::ops::hooks::Event::Resume, "-", &format!("was paused {was}"), out)
                .await;
        }
        None => out.info("automatic failover was not paused; nothing changed"),
    }
    Ok(())
}
