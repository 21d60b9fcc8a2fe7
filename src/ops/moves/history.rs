//! The record of every move of the primary, for `pgrepl history` (as
//! `patronictl history`): when, which kind, from and to which node, the new
//! timeline and the LSN where it branched off (from the new timeline's
//! `.history` file, PostgreSQL's own account of the switch).

use crate::config::Node;
use crate::domain::lsn::Lsn;
use crate::error::{Error, Result};
use crate::store::ctx::Ctx;
use crate::store::state::{MoveKind, MoveRecord};

/// A timeline history file's lines, `<parent tli>\t<switch lsn>\t<reason>`:
/// each ancestor timeline and the LSN where it ended.
pub(crate) fn parse_history(history_file: &str) -> Vec<(u32, Lsn)> {
    history_file
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .collect()
}

/// Whether a cleanly stopped node on `tli`, whose last WAL record is
/// `last`, can follow a primary on `primary_tli` with `history` without a
/// rewind — pg_rewind's own test: its timeline is an ancestor of the
/// primary's (or the same) and its WAL ends before the point where the
/// primary's history left that timeline. Ok says why; Err why not.
pub(crate) fn no_divergence(
    tli: u32,
    last: Lsn,
    primary_tli: u32,
    history: &[(u32, Lsn)],
) -> std::result::Result<String, String> {
    if tli == primary_tli {
        return Ok(format!("it is on the primary's timeline {tli}"));
    }
    match history.iter().find(|(parent, _)| *parent == tli) {
        Some((_, end)) if last < *end => {
            Ok(format!("its WAL on timeline {tli} ends at {last}, before the primary's history left it at {end}"))
        }
        Some((_, end)) => Err(format!(
            "it wrote WAL on timeline {tli} up to {last}, past {end} where the primary's history left that timeline"
        )),
        None => Err(format!("its timeline {tli} is not in the primary's history (timeline {primary_tli})")),
    }
}

/// The primary's timeline and its history (ancestors and where they ended).
pub(crate) async fn history_of(ctx: &Ctx, node: &Node) -> Result<(i32, Vec<(u32, Lsn)>)> {
    let c = ctx.connect(node).await?;
    let err = |e| Error::sql(format!("reading {}'s timeline", node.name), e);
    let row = c
        .query_one("SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int", &[])
        .await
        .map_err(err)?;
    let tli: i32 = row.get(0);
    let file = format!("pg_wal/{tli:08X}.history");
    let text: Option<String> =
        c.query_opt("SELECT pg_read_file($1)", &[&file]).await.ok().flatten().and_then(|r| r.get(0));
    Ok((tli, text.as_deref().map(parse_history).unwrap_or_default()))
}

/// The primary's timeline and where it branched off its parent.
pub(crate) async fn timeline_of(ctx: &Ctx, node: &Node) -> Result<(i32, Option<Lsn>)> {
    let (tli, h) = history_of(ctx, node).await?;
    Ok((tli, h.last().map(|(_, l)| *l)))
}

/// Append a move to the history (best effort for the timeline: the move
/// itself already happened and is recorded either way).
pub(crate) async fn record(ctx: &Ctx, kind: MoveKind, from: &Node, to: &Node) -> Result<()> {
    let (timeline, switch_lsn) = match timeline_of(ctx, to).await {
        Ok((t, l)) => (Some(t), l.map(|l| l.to_string())),
        Err(_) => (None, None),
    };
    let rec = MoveRecord {
        at: crate::domain::time::rfc3339(crate::domain::time::now_unix()),
        kind,
        from: from.name.clone(),
        to: to.name.clone(),
        timeline,
        switch_lsn,
    };
    ctx.store().update(|st| st.history.push(rec.clone()))
}

/// `pgrepl history [--json]`.
pub(crate) fn show(ctx: &Ctx, json: bool) -> Result<()> {
    let st = ctx.store().load()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&st.history).map_err(|e| Error::Other(e.to_string()))?);
        return Ok(());
    }
    if st.history.is_empty() {
        println!(
            "no switchover or failover yet; the primary is {}",
            crate::store::view::ClusterView::read(ctx)?.primary.name
        );
        return Ok(());
    }
    print!("{}", render(&st.history));
    Ok(())
}

/// The table `pgrepl history` prints.
pub(crate) fn render(h: &[MoveRecord]) -> String {
    let mut rows = vec![["TL", "SWITCH LSN", "AT", "MOVE", "FROM", "TO"].map(String::from).to_vec()];
    for m in h {
        rows.push(vec![
            m.timeline.map_or("-".into(), |t| t.to_string()),
            m.switch_lsn.clone().unwrap_or_else(|| "-".into()),
            m.at.clone(),
            m.kind.to_string(),
            m.from.clone(),
            m.to.clone(),
        ]);
    }
    crate::observe::status::table::table(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_point_is_the_last_line_of_the_history_file() {
        let f = "1\t0/3000090\tno recovery target specified\n\n2\t0/50000A0\tno recovery target specified\n";
        assert_eq!(parse_history(f).last().map(|(_, l)| *l), Some("0/50000A0".parse().unwrap()));
        assert_eq!(parse_history(""), vec![]);
    }

    #[test]
    fn divergence_is_judged_against_the_primary_history() {
        let h =
            parse_history("1\t0/3000090\tno recovery target specified\n2\t0/50000A0\tno recovery target specified\n");
        assert_eq!(h, vec![(1, "0/3000090".parse().unwrap()), (2, "0/50000A0".parse().unwrap())]);
        let lsn = |s: &str| s.parse::<Lsn>().unwrap();
        // A former primary of timeline 2 whose last record precedes the switch to 3.
        assert!(no_divergence(2, lsn("0/5000028"), 3, &h).is_ok());
        // One that wrote on after the switch point has diverged.
        assert!(no_divergence(2, lsn("0/6000000"), 3, &h).unwrap_err().contains("past 0/50000A0"));
        assert!(no_divergence(3, lsn("0/6000000"), 3, &h).is_ok());
        assert!(no_divergence(7, lsn("0/1"), 3, &h).unwrap_err().contains("not in the primary's history"));
    }

    #[test]
    fn table_lists_moves_in_order() {
        let m = |tl, kind: MoveKind, from: &str, to: &str| MoveRecord {
            at: "2026-11-22T10:00:00.000Z".into(),
            kind,
            from: from.into(),
            to: to.into(),
            timeline: Some(tl),
            switch_lsn: Some("0/5000A0".into()),
        };
        let t = render(&[m(2, MoveKind::Switchover, "pg-1", "pg-2"), m(3, MoveKind::Failover, "pg-2", "pg-1")]);
        assert_eq!(
            t,
            "TL  SWITCH LSN  AT                        MOVE        FROM  TO
2   0/5000A0    2026-11-22T10:00:00.000Z  switchover  pg-1  pg-2
3   0/5000A0    2026-11-22T10:00:00.000Z  failover    pg-2  pg-1
"
        );
    }
}
