//! `pgrepl reload --dry-run`: what a reload would change, changing
//! nothing. Each setting with its old and new value and whether it takes a
//! reload or a restart, the other files that differ, the roles, databases,
//! schema files and slots the primary would get, and which of pgrepl's own
//! settings changed (those apply when the supervisor restarts). The
//! comparisons are pure functions of texts, unit-tested here.

use std::collections::BTreeMap;

use crate::config::{slot_name_for, Node, Role};
use crate::error::{Error, Result};
use crate::output::Output;
use crate::store::ctx::Ctx;

/// The `key = value` lines of a postgresql.conf pgrepl rendered (its own
/// format: one setting per line, a why-comment after four spaces).
pub(crate) fn parse_conf(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.starts_with("include"))
        .filter_map(|l| {
            let (k, rest) = l.split_once(" = ")?;
            let v = rest.split("    # ").next().unwrap_or(rest).trim();
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

/// Settings whose value differs: (name, old, new); None is "not set".
pub(crate) fn diff_conf(old: &str, new: &str) -> Vec<(String, Option<String>, Option<String>)> {
    let (a, b) = (parse_conf(old), parse_conf(new));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| (k.clone(), a.get(k).cloned(), b.get(k).cloned()))
        .collect()
}

/// pgrepl's own settings, read when the supervisor starts: the sections
/// and keys a reload does not apply.
const OWN: &[(&str, Option<&str>)] = &[
    ("monitor", None),
    ("failover", None),
    ("api", None),
    ("supervisor", None),
    ("hooks", None),
    ("replication", Some("durability")),
    ("replication", Some("sync_count")),
    ("replication", Some("auto_reclone")),
];

/// Which of pgrepl's own settings differ between two config texts
/// (`[monitor]`, `replication.durability`, ...). Unparsable text counts as
/// changed: the caller says so rather than guess.
pub(crate) fn own_settings_changed(old: &str, new: &str) -> Vec<String> {
    let (Ok(a), Ok(b)) = (old.parse::<toml::Table>(), new.parse::<toml::Table>()) else {
        return vec!["(the config the supervisor started with cannot be read)".into()];
    };
    OWN.iter()
        .filter(|(section, key)| {
            let get = |t: &toml::Table| {
                let s = t.get(*section);
                match key {
                    None => s.cloned(),
                    Some(k) => s.and_then(|s| s.get(*k)).cloned(),
                }
            };
            get(&a) != get(&b)
        })
        .map(|(section, key)| key.map_or(format!("[{section}]"), |k| format!("{section}.{k}")))
        .collect()
}

/// The sentence `reload` ends with about pgrepl's own settings, if any changed.
pub(crate) fn own_settings_note(ctx: &Ctx) -> Option<String> {
    let saved = std::fs::read_to_string(ctx.layout.supervisor_config()).ok()?;
    let now = std::fs::read_to_string(&ctx.cfg.path).ok()?;
    let changed = own_settings_changed(&saved, &now);
    (!changed.is_empty()).then(|| {
        format!(
            "pgrepl's own settings changed ({}): they apply when the supervisor restarts (`pgrepl down --leave-running`, then `pgrepl up`: no database downtime)",
            changed.join(", ")
        )
    })
}

/// `pgrepl reload --dry-run`.
pub(crate) async fn dry_run(ctx: &Ctx, nodes: &[Node], primary: &Node, out: &Output) -> Result<()> {
    let mut any = false;
    for n in nodes {
        let role = if n.name == primary.name { Role::Primary } else { Role::Replica };
        let files = crate::ops::configure::render_node_files(ctx, n, role, primary)?;
        let c = ctx.connect(n).await?;
        for (name, new) in &files.files {
            let path = n.data_dir.join(name);
            let old = std::fs::read_to_string(&path).unwrap_or_default();
            if *name != "postgresql.conf" {
                if old != *new {
                    any = true;
                    out.info(format!("{}: {name} would change (applied by a reload)", n.name));
                }
                continue;
            }
            let changes = diff_conf(&old, new);
            let names: Vec<String> = changes.iter().map(|c| c.0.clone()).collect();
            let rows = c
                .query("SELECT name, context FROM pg_settings WHERE name = ANY($1)", &[&names])
                .await
                .map_err(|e| Error::sql("reading setting contexts", e))?;
            for (k, a, b) in &changes {
                any = true;
                let context: Option<String> = rows.iter().find(|r| r.get::<_, String>(0) == *k).map(|r| r.get(1));
                let takes = if context.as_deref() == Some("postmaster") { "restart" } else { "reload" };
                let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".into());
                out.info(format!("{}: {k}: {} -> {} (takes a {takes})", n.name, show(a), show(b)));
            }
        }
        if role == Role::Primary {
            any |= primary_objects(ctx, &c, n, out).await?;
        }
    }
    if let Some(note) = own_settings_note(ctx) {
        any = true;
        out.info(note);
    }
    if !any {
        out.info("nothing would change");
    }
    out.info("dry run: nothing was changed");
    Ok(())
}

/// Roles, databases, schema files and slots the primary would get.
async fn primary_objects(ctx: &Ctx, c: &tokio_postgres::Client, primary: &Node, out: &Output) -> Result<bool> {
    let q = |sql: &'static str| async move {
        c.query(sql, &[])
            .await
            .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<String>>())
            .map_err(|e| Error::sql("reading roles, databases and slots", e))
    };
    let roles = q("SELECT rolname::text FROM pg_roles").await?;
    let dbs = q("SELECT datname::text FROM pg_database").await?;
    let slots = q("SELECT slot_name::text FROM pg_replication_slots WHERE slot_type = 'physical'").await?;
    let state = ctx.store().load()?;
    let mut any = false;
    let mut say = |s: String| {
        any = true;
        out.info(format!("{}: {s}", primary.name));
    };
    for d in &ctx.cfg.databases {
        if !d.owner.is_empty() && !roles.contains(&d.owner) {
            say(format!("would create role {} (LOGIN)", d.owner));
        }
        if !dbs.contains(&d.name) {
            say(format!("would create database {} owned by {}", d.name, d.owner));
        }
        for f in &d.schema {
            if !state.schemas_applied.contains(&crate::ops::bootstrap::schema_key(&d.name, f)) {
                say(format!("would apply {} to {}", f.display(), d.name));
            }
        }
    }
    for n in ctx.cfg.nodes.iter().filter(|n| n.name != primary.name) {
        if let Some(slot) = slot_name_for(&ctx.cfg, n).filter(|s| !slots.contains(s)) {
            say(format!("would create replication slot {slot} for {}", n.name));
        }
    }
    for s in ctx.bookkeeping()?.slots_created.iter().filter(|s| slots.contains(s)) {
        let wanted =
            ctx.cfg.nodes.iter().any(|n| n.name != primary.name && slot_name_for(&ctx.cfg, n).as_ref() == Some(s));
        if !wanted {
            say(format!("would drop replication slot {s} (its standby left the config)"));
        }
    }
    out.info(format!(
        "{}: the passwords of {} and the database owners are set again (they cannot be compared: only verifiers are stored)",
        primary.name, ctx.cfg.replication.user
    ));
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_compared_by_value_not_by_comment() {
        let old = "# header\ninclude_if_exists 'postgresql.base.conf'    # initdb's\n\nport = 15432    # why\nshared_buffers = '128MB'    # set in pgrepl.toml [postgresql]\nwork_mem = '4MB'    # x\n";
        let new = "port = 15432    # another why\nshared_buffers = '256MB'    # set in pgrepl.toml [postgresql]\nmax_connections = 50    # y\n";
        assert_eq!(
            diff_conf(old, new),
            vec![
                ("max_connections".into(), None, Some("50".into())),
                ("shared_buffers".into(), Some("'128MB'".into()), Some("'256MB'".into())),
                ("work_mem".into(), Some("'4MB'".into()), None),
            ]
        );
    }

    #[test]
    fn only_a_change_of_pgrepls_own_settings_is_reported() {
        let a = "[cluster]\nname = \"x\"\n[replication]\ndurability = \"sync\"\n[monitor]\ninterval = \"1s\"\n[postgresql]\nshared_buffers = \"128MB\"\n";
        let same_own = a.replace("128MB", "256MB");
        assert!(own_settings_changed(a, &same_own).is_empty());
        let b = a.replace("\"1s\"", "\"5s\"").replace("\"sync\"", "\"async\"");
        assert_eq!(own_settings_changed(a, &b), vec!["[monitor]", "replication.durability"]);
    }
}
