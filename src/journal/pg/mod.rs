//! The journal on PostgreSQL: one database holds many cutovers, each in its own schema with
//! the same tables as an SQLite journal, and a lease per cutover instead of a file lock.
//!
//! A cutover is named by its playbook's `name`, not by a path on one machine, so a second
//! machine with the same playbook and `--state` finds the same journal. Its tables live in the
//! schema `cutover_<first 16 hex digits of sha256(name)>`, registered in `runner.cutovers`.
//!
//! The lease (`runner.leases`: holder, expiry, fence) replaces the flock: the holder renews it
//! from a thread with its own connection; a holder that died loses it when it expires (the
//! database's clock decides, not the machines'); each takeover increments the fence, and every
//! journal write checks in its own transaction that the fence is still the one its run was
//! given (the lease row is read `FOR SHARE`, so a takeover waits for that write to commit and
//! no write can follow the takeover). No session advisory lock is used: nothing is tied to a
//! connection that could outlive or miss its unlock.
//!
//! The parts: `connect` (the URL, the location of a cutover, logging in: password, TLS),
//! `schema` (the migrations, opening a cutover's journal to write or only to read), `lease`,
//! and `tx` (a transaction as the journal's shared SQL interface).

mod connect;
mod lease;
mod schema;
mod tx;

pub use connect::*;
pub use lease::*;
pub use schema::*;
pub use tx::*;
