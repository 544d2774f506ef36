//! Command-line options of the `tidemark` server binary.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use tidemark_server::{DatabaseConfig, RetainPolicy, StateBackend};

/// Tidemark: a Postgres-compatible streaming database.
///
/// Connect with any Postgres client, e.g. `psql -h 127.0.0.1 -p 4566`.
/// Every option can also be set through the environment variable shown.
#[derive(Debug, Parser)]
#[command(name = "tidemark", version, about, args_override_self = true)]
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

    /// Where state is kept: `rocksdb` (durable, in the data directory) or
    /// `memory` (lost when the server stops; for tests).
    #[arg(long, env = "TIDEMARK_STATE_BACKEND", value_enum, default_value_t = Backend::Rocksdb)]
    pub state_backend: Backend,

    /// Memory for RocksDB's block cache, e.g. `256MiB`, `1GiB`: what bounds
    /// the memory reads of stored state use.
    #[arg(long, env = "TIDEMARK_STATE_CACHE_SIZE", default_value = "256MiB", value_name = "BYTES", value_parser = parse_bytes)]
    pub state_cache_size: usize,

    /// Memory all `GROUP BY`s of the server keep of their groups together,
    /// e.g. `256MiB`; past it, the least recently used groups are evicted
    /// and read back from the store when their next row arrives.
    #[arg(long, env = "TIDEMARK_OPERATOR_CACHE_SIZE", default_value = "256MiB", value_name = "BYTES", value_parser = parse_bytes)]
    pub operator_cache_size: usize,

    /// Rows of an existing table or view that a view being created over it
    /// receives per checkpoint: what bounds the memory `CREATE MATERIALIZED
    /// VIEW` takes over a large relation. The statement returns once all
    /// are received.
    #[arg(long, env = "TIDEMARK_BACKFILL_ROWS", default_value_t = tidemark_server::DEFAULT_BACKFILL_ROWS, value_name = "ROWS")]
    pub backfill_rows: usize,

    /// Start from a savepoint (written by `CREATE SAVEPOINT '<dir>'`): its
    /// state is copied into the data directory, which must hold none.
    #[arg(long, env = "TIDEMARK_RESTORE_FROM", value_name = "DIR")]
    pub restore_from: Option<PathBuf>,

    /// How many copies of recent checkpoints to keep under
    /// `<data dir>/checkpoints`, each one a directory `--restore-from` can
    /// start a server from; 0 keeps none.
    #[arg(
        long,
        env = "TIDEMARK_RETAINED_CHECKPOINTS",
        default_value_t = 3,
        value_name = "N"
    )]
    pub retained_checkpoints: usize,

    /// How often a checkpoint is copied for keeping, e.g. `1m`, `10s`.
    #[arg(long, env = "TIDEMARK_RETAIN_INTERVAL", default_value = "1m", value_name = "DURATION", value_parser = parse_duration)]
    pub retain_interval: Duration,
}

/// `--state-backend` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Keep state in memory; it is lost when the server stops.
    Memory,
    /// Keep state in RocksDB under the data directory.
    Rocksdb,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("the interval must be greater than zero".to_string());
    }
    Ok(d)
}

/// A byte count with an optional binary unit: `512`, `64KiB`, `256MiB`, `2GiB`
/// (`KB`, `MB`, `GB` and `K`, `M`, `G` mean the same).
fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("\"{s}\" is not a size such as 256MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => {
            return Err(format!(
                "unknown size unit \"{other}\"; use KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s} is too large"))
}

impl Cli {
    /// The database configuration these options describe; refuses options
    /// this build cannot honour rather than silently ignoring them.
    pub fn database_config(&self) -> anyhow::Result<DatabaseConfig> {
        let state_backend = match self.state_backend {
            Backend::Memory => StateBackend::Memory,
            Backend::Rocksdb => StateBackend::RocksDb,
        };
        if self.state_cache_size < 1 << 20 {
            bail!("--state-cache-size must be at least 1MiB");
        }
        let parallelism = match self.parallelism {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(DatabaseConfig {
            data_dir: self.data_dir.clone(),
            parallelism,
            checkpoint_interval: self.checkpoint_interval,
            state_backend,
            state_cache_bytes: self.state_cache_size,
            operator_cache_bytes: self.operator_cache_size,
            backfill_rows: self.backfill_rows,
            restore_from: self.restore_from.clone(),
            retain: RetainPolicy {
                keep: self.retained_checkpoints,
                every: self.retain_interval,
            },
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
        let config = cli.database_config().expect("defaults accepted");
        assert_eq!(config.checkpoint_interval, Duration::from_secs(1));
        assert_eq!(config.state_backend, StateBackend::RocksDb);
        assert_eq!(config.state_cache_bytes, 256 << 20);
        assert_eq!(config.operator_cache_bytes, 256 << 20);
        assert!(config.parallelism >= 1);
    }

    #[test]
    fn state_options() {
        let cli = Cli::try_parse_from([
            "tidemark",
            "--state-backend",
            "memory",
            "--state-cache-size",
            "1GiB",
            "--operator-cache-size",
            "0",
        ])
        .expect("parses");
        let config = cli.database_config().expect("valid");
        assert_eq!(config.state_backend, StateBackend::Memory);
        assert_eq!(config.state_cache_bytes, 1 << 30);
        // 0 is allowed: groups leave memory as soon as they are committed.
        assert_eq!(config.operator_cache_bytes, 0);
        assert_eq!(parse_bytes("64k"), Ok(64 << 10));
        assert!(parse_bytes("12 parsecs").is_err());
        let small = Cli::try_parse_from(["tidemark", "--state-cache-size", "10KiB"]).unwrap();
        assert!(small.database_config().is_err());
    }

    /// An option given twice takes its last value, so a script can append
    /// to a command line; the backfill rows default, and can be set.
    #[test]
    fn the_last_value_of_an_option_wins() {
        let cli = Cli::try_parse_from([
            "tidemark",
            "--parallelism",
            "2",
            "--backfill-rows",
            "10",
            "--parallelism",
            "1",
        ])
        .expect("parses");
        let config = cli.database_config().expect("valid");
        assert_eq!(config.parallelism, 1);
        assert_eq!(config.backfill_rows, 10);
        let defaults = Cli::try_parse_from(["tidemark"]).unwrap();
        let config = defaults.database_config().unwrap();
        assert_eq!(config.backfill_rows, tidemark_server::DEFAULT_BACKFILL_ROWS);
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
