//! Command-line options of the `tidemark` server binary.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use tidemark_server::{DatabaseConfig, StateBackend};

/// Tidemark: a Postgres-compatible streaming database.
///
/// Connect with any Postgres client, e.g. `psql -h 127.0.0.1 -p 4566`.
/// Every option can also be set through the environment variable shown.
#[derive(Debug, Parser)]
#[command(name = "tidemark", version, about)]
pub struct Cli {
    /// Address and port to accept Postgres connections on.
    #[arg(
        long,
        env = "TIDEMARK_LISTEN",
        default_value = "127.0.0.1:4566",
        value_name = "ADDR:PORT"
    )]
    pub listen: String,

    /// Directory holding the database's state and checkpoints.
    #[arg(
        long,
        env = "TIDEMARK_DATA_DIR",
        default_value = "./tidemark-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Number of parallel instances of each streaming operator
    /// [default: the number of CPU cores].
    #[arg(long, env = "TIDEMARK_PARALLELISM", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub parallelism: Option<u32>,

    /// How often streaming state is checkpointed, e.g. `1s`, `500ms`, `1m`.
    #[arg(long, env = "TIDEMARK_CHECKPOINT_INTERVAL", default_value = "1s", value_name = "DURATION", value_parser = parse_duration)]
    pub checkpoint_interval: Duration,

    /// Where operator state is kept. Only `memory` is available in this build.
    #[arg(long, env = "TIDEMARK_STATE_BACKEND", value_enum, default_value_t = Backend::Memory)]
    pub state_backend: Backend,
}

/// `--state-backend` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Keep state in memory; it is lost when the server stops.
    Memory,
    /// Keep state in RocksDB under the data directory (not in this build yet).
    Rocksdb,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("the interval must be greater than zero".to_string());
    }
    Ok(d)
}

impl Cli {
    /// The database configuration these options describe; refuses options
    /// this build cannot honour rather than silently ignoring them.
    pub fn database_config(&self) -> anyhow::Result<DatabaseConfig> {
        let state_backend = match self.state_backend {
            Backend::Memory => StateBackend::Memory,
            Backend::Rocksdb => bail!(
                "--state-backend rocksdb is not available: this build keeps state in memory only \
                 (use --state-backend memory)"
            ),
        };
        let parallelism = match self.parallelism {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(DatabaseConfig {
            data_dir: self.data_dir.clone(),
            parallelism,
            checkpoint_interval: self.checkpoint_interval,
            state_backend,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["tidemark"]).expect("defaults parse");
        assert_eq!(cli.listen, "127.0.0.1:4566");
        let config = cli.database_config().expect("memory backend accepted");
        assert_eq!(config.checkpoint_interval, Duration::from_secs(1));
        assert_eq!(config.state_backend, StateBackend::Memory);
        assert!(config.parallelism >= 1);
    }

    #[test]
    fn rocksdb_is_refused() {
        let cli = Cli::try_parse_from(["tidemark", "--state-backend", "rocksdb"]).expect("parses");
        let err = cli.database_config().expect_err("refused").to_string();
        assert!(err.contains("memory only"), "{err}");
    }

    #[test]
    fn options() {
        let cli = Cli::try_parse_from([
            "tidemark",
            "--listen",
            "0.0.0.0:5433",
            "--parallelism",
            "3",
            "--checkpoint-interval",
            "250ms",
        ])
        .expect("parses");
        let config = cli.database_config().expect("valid");
        assert_eq!(config.parallelism, 3);
        assert_eq!(config.checkpoint_interval, Duration::from_millis(250));
        assert!(Cli::try_parse_from(["tidemark", "--parallelism", "0"]).is_err());
    }
}
