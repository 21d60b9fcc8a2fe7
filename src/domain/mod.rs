//! Values and rules of the problem itself, with no I/O and no imports
//! from the rest of pgrepl: WAL positions, sizes and durations.

pub mod deadline;
pub mod election;
pub mod guc;
pub mod lsn;
pub mod modes;
pub mod time;
pub mod units;
