//! One module per command: what the user asked for, carried out through
//! `ops` and `agent`, and printed.

pub(crate) mod confirm;
pub(crate) mod detach;
pub(crate) mod down;
pub(crate) mod drill;
pub(crate) mod generate;
pub(crate) mod init;
pub(crate) mod observe;
pub(crate) mod psql;
pub(crate) mod summary;
pub(crate) mod systemd;
pub(crate) mod up;
pub(crate) mod validate;
