//! Values and rules of the problem itself, with no I/O and no imports
//! from the rest of pgrepl: WAL positions, sizes and durations.

pub(crate) mod deadline;
pub(crate) mod durability;
pub(crate) mod election;
pub(crate) mod guc;
pub(crate) mod lsn;
pub(crate) mod modes;
pub(crate) mod sentence;
pub(crate) mod time;
pub(crate) mod units;
