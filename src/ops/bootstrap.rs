//! What the primary gets once it accepts connections: the replication role,
//! the databases and their owners, the schema files (once each), and one
//! physical slot per replica. Every step is idempotent, so `up` runs it on
//! every start and a change of password in the config is applied.

use crate::config::Node;
use crate::error::Result;
use crate::output::Output;
use crate::pg::sql;
use crate::store::ctx::Ctx;
use crate::store::state::State;

/// What a standby needs before it can stream from `primary`: the replication
/// role with the configured password, and a slot for each replica. Quick, so
/// replicas can start while the rest of the bootstrap runs.
pub(crate) async fn replication(ctx: &Ctx, primary: &Node) -> Result<()> {
    let client = ctx.connect(primary).await?;
    sql::ensure_role(
        &client,
        &ctx.cfg.replication.user,
        "LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE",
        Some(&ctx.cfg.replication.password),
    )
    .await?;
    rewind_role(ctx, &client).await?;
    crate::ops::moves::ensure_slots(ctx, primary).await
}

/// Across hosts, a former primary is rewound over TCP: a login role that
/// may call only what pg_rewind calls (no superuser, no replication), with
/// the replication secret, which every host already has in its passfile.
async fn rewind_role(ctx: &Ctx, client: &tokio_postgres::Client) -> Result<()> {
    if ctx.cfg.etcd.is_none() || ctx.bin()?.major < 11 {
        return Ok(());
    }
    let role = crate::pg::rewind::ROLE;
    let attrs = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION";
    sql::ensure_role(client, role, attrs, Some(&ctx.cfg.replication.password)).await?;
    client
        .batch_execute(crate::pg::rewind::GRANTS)
        .await
        .map_err(|e| crate::error::Error::sql(format!("granting {role} what pg_rewind needs"), e))
}

/// Bootstrap `primary`. `state` is updated and saved as steps complete.
pub(crate) async fn run(ctx: &Ctx, primary: &Node, state: &mut State, out: &Output) -> Result<()> {
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
    check_roles(ctx, &client).await?;
    apply_roles(ctx, &client, out, &primary.name).await?;
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
            ctx.store().update(|st| st.schemas_applied.push(key.clone()))?;
        }
    }
    crate::ops::moves::ensure_slots(ctx, primary).await?;
    if !state.bootstrapped {
        state.bootstrapped = true;
        ctx.store().update(|st| st.bootstrapped = true)?;
    }
    Ok(())
}

pub(crate) fn schema_key(db: &str, f: &std::path::Path) -> String {
    format!("{db}:{}", f.display())
}

/// Every `[[role]]`'s `in_roles` names a role that exists or is declared:
/// checked before anything is created or changed, each problem at its
/// `file:line:col`.
pub(crate) async fn check_roles(ctx: &Ctx, client: &tokio_postgres::Client) -> Result<()> {
    let existing: Vec<String> = client
        .query("SELECT rolname::text FROM pg_roles", &[])
        .await
        .map_err(|e| crate::error::Error::sql("reading roles", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let declared: Vec<&str> = ctx.cfg.roles.iter().map(|r| r.name.as_str()).collect();
    let problems: Vec<String> = ctx
        .cfg
        .roles
        .iter()
        .flat_map(|r| r.in_roles.iter())
        .filter(|(m, _)| !existing.contains(m) && !declared.contains(&m.as_str()))
        .map(|(m, at)| format!("{at}: in_roles: role `{m}` does not exist in the cluster and is not a [[role]] in this file; create it or fix the name (nothing was changed)"))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(crate::error::Error::Config { problems })
    }
}

/// Create or update each `[[role]]` (login, password, exactly the listed
/// memberships), and warn about managed roles that left the config: pgrepl
/// never drops a role.
async fn apply_roles(ctx: &Ctx, client: &tokio_postgres::Client, out: &Output, node: &str) -> Result<()> {
    let err = |what: String| move |e| crate::error::Error::sql(what, e);
    for r in &ctx.cfg.roles {
        let login = if r.login { "LOGIN" } else { "NOLOGIN" };
        sql::ensure_role(
            client,
            &r.name,
            &format!("{login} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"),
            r.password.as_ref().filter(|p| !p.expose().is_empty()),
        )
        .await?;
    }
    // Memberships after every role exists (one declared role may be in another).
    for r in &ctx.cfg.roles {
        let current: Vec<String> = client
            .query(
                "SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                 JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = $1",
                &[&r.name],
            )
            .await
            .map_err(err(format!("reading the memberships of {}", r.name)))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let wanted: Vec<&str> = r.in_roles.iter().map(|(m, _)| m.as_str()).collect();
        for m in wanted.iter().filter(|m| !current.iter().any(|c| c == *m)) {
            client
                .batch_execute(&format!("GRANT {} TO {}", sql::ident(m), sql::ident(&r.name)))
                .await
                .map_err(err(format!("granting {m} to {}", r.name)))?;
            out.info(format!("{node}: role {} is now a member of {m}", r.name));
        }
        for m in current.iter().filter(|c| !wanted.contains(&c.as_str())) {
            client
                .batch_execute(&format!("REVOKE {} FROM {}", sql::ident(m), sql::ident(&r.name)))
                .await
                .map_err(err(format!("revoking {m} from {}", r.name)))?;
            out.info(format!("{node}: role {} is no longer a member of {m}", r.name));
        }
    }
    let exists: Vec<String> = client
        .query("SELECT rolname::text FROM pg_roles", &[])
        .await
        .map_err(err("reading roles".into()))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let names: Vec<String> = ctx.cfg.roles.iter().map(|r| r.name.clone()).collect();
    // A role that left the config stays on the list (and is warned about)
    // until someone drops it.
    let gone = ctx.store().update(|st| {
        let gone: Vec<String> =
            st.roles_managed.iter().filter(|r| !names.contains(r) && exists.contains(r)).cloned().collect();
        st.roles_managed = names.iter().chain(&gone).cloned().collect();
        gone
    })?;
    for g in gone {
        out.info(format!(
            "warning: role {g} is no longer a [[role]] in the config; pgrepl never drops roles: `DROP ROLE {g}` yourself if it should go"
        ));
    }
    Ok(())
}
