//! Choosing the node to promote: the pure rule every move and the HA loop
//! share, from each candidate's timeline, WAL position and priority.

use crate::domain::lsn::Lsn;

/// A candidate's position, for choosing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidate {
    pub name: String,
    pub timeline: Option<i32>,
    pub received: Option<Lsn>,
    pub replayed: Option<Lsn>,
    /// `[[node]] failover_priority`; 0 = never promoted.
    pub priority: u32,
}

/// Why a `failover_priority = 0` node cannot be the target of a move.
pub(crate) fn never_promoted(node: &str) -> String {
    format!("{node} has failover_priority = 0 and is never promoted; raise it in the config to allow this")
}

/// For each other candidate, the bytes of WAL it lacks (None: unknown);
/// negative when it holds WAL the chosen one lacks (it was not eligible).
pub(crate) type Gaps = Vec<(String, Option<i64>)>;

/// The most advanced eligible candidate (failover_priority above 0): latest
/// timeline, then highest received LSN (no acknowledged WAL left behind),
/// then the higher failover_priority, then highest replayed LSN (less to
/// replay before it can take writes), then config order. Returns it and,
/// for each other, the bytes it lacks.
pub(crate) fn choose(cands: &[Candidate], to: Option<&str>) -> std::result::Result<(Candidate, Gaps), String> {
    let best = match to {
        Some(t) => {
            let c = cands.iter().find(|c| c.name == t).ok_or_else(|| format!("{t} is not a running replica"))?;
            if c.priority == 0 {
                return Err(never_promoted(t));
            }
            c.clone()
        }
        None => cands
            .iter()
            .filter(|c| c.priority > 0)
            .cloned()
            .reduce(|a, b| {
                if (b.timeline, b.received, b.priority, b.replayed) > (a.timeline, a.received, a.priority, a.replayed) {
                    b
                } else {
                    a
                }
            })
            .ok_or_else(|| {
                if cands.is_empty() {
                    "no running replica to promote".to_string()
                } else {
                    "every running replica has failover_priority = 0; none may be promoted".to_string()
                }
            })?,
    };
    let missing = cands
        .iter()
        .filter(|c| c.name != best.name)
        .map(|c| {
            let gap = match (best.received, c.received) {
                (Some(b), Some(o)) if b >= o => Some(b.bytes_since(o).unwrap_or(0) as i64),
                (Some(b), Some(o)) => Some(-(o.bytes_since(b).unwrap_or(0) as i64)),
                _ => None,
            };
            (c.name.clone(), gap)
        })
        .collect();
    Ok((best, missing))
}

/// A replica on timeline 1 that received and replayed up to `lsn`, for tests.
#[cfg(test)]
impl Candidate {
    pub(crate) fn at(name: &str, lsn: &str) -> Candidate {
        Candidate {
            name: name.into(),
            timeline: Some(1),
            received: lsn.parse().ok(),
            replayed: lsn.parse().ok(),
            priority: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, tl: i32, lsn: &str) -> Candidate {
        Candidate { timeline: Some(tl), ..Candidate::at(name, lsn) }
    }

    #[test]
    fn equal_reception_goes_to_the_replica_that_replayed_more() {
        let mut paused = c("pg-2", 1, "0/5000000");
        paused.replayed = "0/4000000".parse().ok();
        let (best, _) = choose(&[paused, c("pg-3", 1, "0/5000000")], None).unwrap();
        assert_eq!(best.name, "pg-3");
    }

    #[test]
    fn most_advanced_replica_wins_and_the_others_gap_is_reported() {
        let (best, missing) = choose(&[c("pg-2", 1, "0/5000000"), c("pg-3", 1, "0/5000100")], None).unwrap();
        assert_eq!(best.name, "pg-3");
        assert_eq!(missing, vec![("pg-2".to_string(), Some(0x100))]);
    }

    #[test]
    fn a_later_timeline_beats_a_higher_lsn() {
        let (best, _) = choose(&[c("pg-2", 2, "0/5000000"), c("pg-3", 1, "0/6000000")], None).unwrap();
        assert_eq!(best.name, "pg-2");
    }

    #[test]
    fn explicit_target_must_be_a_running_replica() {
        assert_eq!(choose(&[c("pg-2", 1, "0/1")], Some("pg-9")).unwrap_err(), "pg-9 is not a running replica");
        assert_eq!(choose(&[], None).unwrap_err(), "no running replica to promote");
    }

    #[test]
    fn priority_breaks_ties_and_zero_is_never_promoted() {
        let p = |name: &str, lsn: &str, priority: u32| Candidate { priority, ..c(name, 1, lsn) };
        // Equal WAL: the higher priority wins over config order.
        let (best, _) = choose(&[p("pg-2", "0/5000000", 1), p("pg-3", "0/5000000", 5)], None).unwrap();
        assert_eq!(best.name, "pg-3");
        // More WAL still wins over priority: no acknowledged WAL is left behind.
        let (best, _) = choose(&[p("pg-2", "0/5000100", 1), p("pg-3", "0/5000000", 5)], None).unwrap();
        assert_eq!(best.name, "pg-2");
        // Priority 0 is skipped even when most advanced; what it holds beyond
        // the chosen one is reported as a negative gap.
        let (best, missing) = choose(&[p("pg-2", "0/5000000", 1), p("pg-3", "0/5000100", 0)], None).unwrap();
        assert_eq!(best.name, "pg-2");
        assert_eq!(missing, vec![("pg-3".to_string(), Some(-0x100))]);
        assert!(choose(&[p("pg-3", "0/5", 0)], Some("pg-3")).unwrap_err().contains("failover_priority = 0"));
        assert!(choose(&[p("pg-3", "0/5", 0)], None)
            .unwrap_err()
            .contains("every running replica has failover_priority = 0"));
    }
}
