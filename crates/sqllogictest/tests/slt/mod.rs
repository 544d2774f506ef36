//! Support for the sqllogictest runner: an in-process server per file and
//! the `AsyncDB` that talks to it over the Postgres protocol.

pub mod db;
pub mod server;
