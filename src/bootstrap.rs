//! What the primary gets once it accepts connections: the replication role,
//! the databases and their owners, the schema files (once each), and one
//! physical slot per replica. Every step is idempotent, so `up` runs it on
//! every start and a change of password in the config is applied.

use crate::config::Node;
use crate::ctx::Ctx;
use crate::error::Result;
use crate::pg::sql;
use crate::state::State;
use crate::supervise::Output;

/// Bootstrap `primary`. `state` is updated and saved as steps complete.
pub async fn run(ctx: &Ctx, primary: &Node, state: &mut State, out: &Output) -> Result<()> {
    let cfg = &ctx.cfg;
    let client = ctx.connect(primary).await?;
    // REPLICATION only: the role can stream and take base backups, nothing more.
    sql::ensure_role(
        &client,
        &cfg.replication.user,
        "LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE",
        Some(&cfg.replication.password),
    )
    .await?;
    for db in &cfg.databases {
        let owner = if db.owner.is_empty() { ctx.runas.name.as_str() } else { db.owner.as_str() };
        if owner != ctx.runas.name {
            sql::ensure_role(&client, owner, "LOGIN", db.owner_password.as_ref()).await?;
        }
        if sql::ensure_database(&client, &db.name, owner).await? {
            out.info(format!("{}: created database {} (owner {owner})", primary.name, db.name));
        }
        let pending: Vec<_> =
            db.schema.iter().filter(|f| !state.schemas_applied.contains(&schema_key(&db.name, f))).collect();
        if pending.is_empty() {
            continue;
        }
        let dbc = sql::connect_socket(&ctx.layout.socket_dir(), primary.port, &ctx.runas.name, &db.name)
            .await
            .map_err(|e| crate::error::Error::sql(format!("connecting to database {}", db.name), e))?;
        for f in pending {
            sql::apply_schema(&dbc, owner, f).await?;
            out.info(format!("{}: applied {} to {}", primary.name, f.display(), db.name));
            let key = schema_key(&db.name, f);
            state.schemas_applied.push(key.clone());
            State::update(&ctx.layout.state_file(), |st| st.schemas_applied.push(key))?;
        }
    }
    crate::moves::ensure_slots(ctx, primary).await?;
    if !state.bootstrapped {
        state.bootstrapped = true;
        State::update(&ctx.layout.state_file(), |st| st.bootstrapped = true)?;
    }
    Ok(())
}

pub(crate) fn schema_key(db: &str, f: &std::path::Path) -> String {
    format!("{db}:{}", f.display())
}
