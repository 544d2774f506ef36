//! Runs every `sql-tests/**/*.slt` file against a fresh in-process server,
//! one file at a time, in each of [`MODES`]: on the in-memory store at
//! parallelism 1 and 4, and in recovery mode at both, on RocksDB, where the
//! server is stopped after every `FLUSH` and started again from its data
//! directory (views resuming from their checkpoints) before the file goes on. Records that hold only without restarts are
//! marked `skipif recovery`.
//!
//! `cargo test -p tidemark-sqllogictest --test sqllogictests -- <substring>`
//! runs only the files whose path contains `<substring>`. A record that takes
//! longer than `TIDEMARK_SLT_TIMEOUT` seconds (default 60) fails its file, so
//! one hang does not stall the suite.

mod slt;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use slt::db::{Target, TidemarkDb};
use slt::server::{DataDir, TestServer};
use sqllogictest::{DefaultColumnType, MakeConnection, Record, Runner};
use tidemark_server::StateBackend;

/// How one run of a file is set up.
#[derive(Clone, Copy)]
struct Mode {
    parallelism: usize,
    /// Restart the server (on RocksDB) after every `FLUSH`.
    recovery: bool,
}

/// Parallelism 1 catches logic bugs plainly, 4 shuffling and merging bugs;
/// recovery mode catches state that a restart loses or doubles.
const MODES: [Mode; 4] = [
    Mode {
        parallelism: 1,
        recovery: false,
    },
    Mode {
        parallelism: 4,
        recovery: false,
    },
    Mode {
        parallelism: 1,
        recovery: true,
    },
    Mode {
        parallelism: 4,
        recovery: true,
    },
];

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "parallelism {}", self.parallelism)?;
        if self.recovery {
            write!(f, ", recovery")?;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql-tests");
    let root = root.canonicalize().unwrap_or(root);
    let mut files = Vec::new();
    if let Err(err) = collect_slt_files(&root, &mut files) {
        eprintln!("cannot list {}: {err}", root.display());
        return ExitCode::FAILURE;
    }
    files.sort();
    files.retain(|f| {
        filters.is_empty()
            || filters
                .iter()
                .any(|s| f.to_string_lossy().contains(s.as_str()))
    });

    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &files {
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for mode in MODES {
            match run_file(file, mode) {
                Ok(()) => {
                    passed += 1;
                    println!("{name} ({mode}) ... ok");
                }
                Err(err) => {
                    failed += 1;
                    println!("{name} ({mode}) ... FAILED\n{err}");
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn collect_slt_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_slt_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "slt") {
            out.push(path);
        }
    }
    Ok(())
}

/// Runs one file. Each stretch of records up to a restart runs on its own
/// runtime; dropping the runtime stops the server and every task it
/// started. The data directory goes at the end.
fn run_file(file: &Path, mode: Mode) -> Result<(), String> {
    let records = sqllogictest::parse_file::<DefaultColumnType>(file).map_err(|e| e.to_string())?;
    let data_dir = DataDir::new().map_err(|e| format!("{e:#}"))?;
    let backend = if mode.recovery {
        StateBackend::RocksDb
    } else {
        StateBackend::Memory
    };
    let mut records = records
        .into_iter()
        .take_while(|r| !matches!(r, Record::Halt { .. }))
        .peekable();
    // One runner for the whole file (its `__TEST_DIR__` and connections
    // live on); its sessions reconnect to each new server.
    let target = Arc::new(Target::default());
    let make = Arc::clone(&target);
    let mut runner = Runner::new(move || TidemarkDb::open(Arc::clone(&make)));
    runner.add_label("tidemark");
    if mode.recovery {
        runner.add_label("recovery");
    }
    let mut outcome = Ok(());
    while outcome.is_ok() && records.peek().is_some() {
        let mut stretch = Vec::new();
        for record in records.by_ref() {
            let restart = mode.recovery && is_flush(&record);
            stretch.push(record);
            if restart {
                break;
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build a runtime: {e}"))?;
        outcome = runtime.block_on(async {
            let server = TestServer::start(&data_dir.0, mode.parallelism, backend)
                .await
                .map_err(|e| format!("cannot start the server: {e:#}"))?;
            target.set(server.addr);
            let outcome = run_records(&mut runner, stretch).await;
            server.stop().await;
            outcome
        });
        runtime.shutdown_timeout(Duration::from_secs(10));
    }
    outcome
}

/// Whether a record is a `FLUSH` statement (after which recovery mode restarts).
fn is_flush(record: &Record<DefaultColumnType>) -> bool {
    match record {
        Record::Statement { sql, .. } => sql
            .trim()
            .trim_end_matches(';')
            .trim()
            .eq_ignore_ascii_case("flush"),
        _ => false,
    }
}

/// `Runner::run_file_async`, but with a time limit per record that names
/// the record that hung.
async fn run_records<M>(
    runner: &mut Runner<TidemarkDb, M>,
    records: Vec<Record<DefaultColumnType>>,
) -> Result<(), String>
where
    M: MakeConnection<Conn = TidemarkDb>,
{
    let limit = record_timeout();
    for record in records {
        let loc = match &record {
            Record::Statement { loc, .. }
            | Record::Query { loc, .. }
            | Record::System { loc, .. } => loc.to_string(),
            _ => String::new(),
        };
        let shown = record.to_string();
        match tokio::time::timeout(limit, runner.run_async(record)).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return Err(err.display(false).to_string()),
            Err(_) => {
                return Err(format!(
                    "timed out after {}s at {loc}\n{shown}",
                    limit.as_secs()
                ))
            }
        }
    }
    Ok(())
}

fn record_timeout() -> Duration {
    let secs = std::env::var("TIDEMARK_SLT_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}
