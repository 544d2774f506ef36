//! Runs every `sql-tests/**/*.slt` file against a fresh in-process server,
//! once at parallelism 1 and once at parallelism 4, one file at a time.
//!
//! `cargo test -p tidemark-sqllogictest --test sqllogictests -- <substring>`
//! runs only the files whose path contains `<substring>`. A record that takes
//! longer than `TIDEMARK_SLT_TIMEOUT` seconds (default 60) fails its file, so
//! one hang does not stall the suite.

mod slt;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use slt::db::TidemarkDb;
use slt::server::TestServer;
use sqllogictest::{DefaultColumnType, MakeConnection, Record, Runner};

/// Each file runs at every one of these parallelisms: 1 catches logic bugs
/// plainly, 4 catches shuffling and merging bugs.
const PARALLELISMS: [usize; 2] = [1, 4];

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
        for parallelism in PARALLELISMS {
            match run_file(file, parallelism) {
                Ok(()) => {
                    passed += 1;
                    println!("{name} (parallelism {parallelism}) ... ok");
                }
                Err(err) => {
                    failed += 1;
                    println!("{name} (parallelism {parallelism}) ... FAILED\n{err}");
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

/// Runs one file on its own runtime; dropping the runtime at the end stops
/// the server and every task it started, then its data directory goes.
fn run_file(file: &Path, parallelism: usize) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build a runtime: {e}"))?;
    let (server, result) = runtime.block_on(async {
        let server = TestServer::start(parallelism)
            .await
            .map_err(|e| format!("cannot start the server: {e:#}"))?;
        let addr = server.addr;
        let mut runner = Runner::new(move || TidemarkDb::connect(addr));
        runner.add_label("tidemark");
        let result = run_records(&mut runner, file).await;
        runner.shutdown_async().await;
        Ok::<_, String>((server, result))
    })?;
    drop(runtime);
    drop(server);
    result
}

/// `Runner::run_file_async`, but with a time limit per record that names
/// the record that hung.
async fn run_records<M>(runner: &mut Runner<TidemarkDb, M>, file: &Path) -> Result<(), String>
where
    M: MakeConnection<Conn = TidemarkDb>,
{
    let limit = record_timeout();
    let records = sqllogictest::parse_file::<DefaultColumnType>(file).map_err(|e| e.to_string())?;
    for record in records {
        let loc = match &record {
            Record::Halt { .. } => break,
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
