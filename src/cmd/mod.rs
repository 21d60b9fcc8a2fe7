//! One module per command: what the user asked for, carried out through
//! `ops` and `agent`, and printed.

pub mod confirm;
pub mod detach;
pub mod down;
pub mod init;
pub mod observe;
pub mod psql;
pub mod reload;
pub mod summary;
pub mod up;
pub mod validate;
