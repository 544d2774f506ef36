//! The event-time benchmark: a CSV file of bids (`auction, bidder, price,
//! ts`; ~1000 auctions; event time advancing 1000 rows per second with up to
//! 1 s of disorder) into one windowed view at parallelism 1, timed from
//! CREATE MATERIALIZED VIEW until FLUSH returns (the whole file read, parsed,
//! aggregated and every window closed). Runs the server in-process.
//!
//! `cargo build --release --workspace && target/release/window-bench --rows 10000000 --window tumble`

mod generate;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use tidemark_server::{Database, DatabaseConfig, StateBackend, StatementResult};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Window {
    Tumble,
    Hop,
    Session,
    /// No window: a plain `GROUP BY auction, bidder`, nearly one group per
    /// bid, whose state grows with the input (what the operator cache bounds).
    None,
    /// No window: a plain `GROUP BY auction`, ~1000 groups, each changed in
    /// every checkpoint.
    Auction,
    /// TUMBLE by `auction, bidder`: nearly a group per bid in each window.
    TumbleBidder,
}

#[derive(Debug, Parser)]
struct Args {
    /// Bids in the file.
    #[arg(long, default_value_t = 10_000_000)]
    rows: u64,
    #[arg(long, value_enum, default_value_t = Window::Tumble)]
    window: Window,
    /// Where the CSV file is written (and reused when it exists).
    #[arg(long, default_value = "/tmp/tidemark-bench")]
    dir: PathBuf,
    #[arg(long, default_value_t = 1)]
    parallelism: usize,
    /// Group by window only, not per auction: a few thousand result rows,
    /// so the figure leaves out storing a view row per auction and window.
    #[arg(long)]
    windows_only: bool,
    /// Keep state in RocksDB (in `<dir>/data`, emptied first) instead of memory.
    #[arg(long)]
    rocksdb: bool,
    /// Milliseconds between checkpoints; a large value measures running
    /// without them (FLUSH still takes one at the end).
    #[arg(long, default_value_t = 1000)]
    checkpoint_ms: u64,
    /// The TUMBLE window's length, seconds (1000 rows each): a long one
    /// with `--window tumble-bidder` makes windows of many groups.
    #[arg(long, default_value_t = 10)]
    window_secs: u64,
    /// Windowed views emit each window's changes as they come, instead of
    /// its rows once it closes (`EMIT ON WINDOW CLOSE`).
    #[arg(long)]
    continuous: bool,
    /// Memory the GROUP BYs keep of their groups, together, MiB.
    #[arg(long, default_value_t = 64)]
    operator_cache_mib: usize,
}

async fn run(db: &Database, sql: &str) -> anyhow::Result<StatementResult> {
    let mut results = db.execute(sql).await;
    match results.pop() {
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => bail!("{sql}: {e}"),
        None => bail!("{sql}: no result"),
    }
}

/// CPU time (user + system) this process has used so far, from /proc (Linux).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel's USER_HZ, 100 on Linux.
    Some(ticks as f64 / 100.0)
}

/// Peak resident memory of this process, from /proc (Linux).
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let path = args.dir.join(format!("bids-{}.csv", args.rows));
    if !path.exists() {
        let started = Instant::now();
        generate::write_bids(&path, args.rows).context("writing the bids file")?;
        eprintln!("generated {} in {:.1?}", path.display(), started.elapsed());
    }
    let bytes = std::fs::metadata(&path)?.len();
    let data_dir = args.dir.join("data");
    let _ = std::fs::remove_dir_all(&data_dir);
    let db = Database::start(DatabaseConfig {
        data_dir,
        parallelism: args.parallelism,
        checkpoint_interval: Duration::from_millis(args.checkpoint_ms.max(1)),
        state_backend: if args.rocksdb {
            StateBackend::RocksDb
        } else {
            StateBackend::Memory
        },
        state_cache_bytes: 256 << 20,
        operator_cache_bytes: args.operator_cache_mib << 20,
        backfill_rows: tidemark_server::DEFAULT_BACKFILL_ROWS,
        restore_from: None,
        // No copies of checkpoints while timing the engine.
        retain: tidemark_server::RetainPolicy {
            keep: 0,
            ..Default::default()
        },
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    run(
        &db,
        &format!(
            "CREATE SOURCE bids (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP, \
             WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
             WITH (connector = 'file', path = '{}', format = 'csv')",
            path.display()
        ),
    )
    .await?;
    let window = match args.window {
        Window::Tumble | Window::TumbleBidder => {
            format!("TUMBLE(bids, ts, INTERVAL '{}' SECOND)", args.window_secs)
        }
        Window::Hop => "HOP(bids, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND)".into(),
        Window::Session => "SESSION(bids, ts, INTERVAL '5' SECOND)".into(),
        Window::None | Window::Auction => "bids".into(),
    };
    let (keys, emit) = match args.window {
        Window::None => ("auction, bidder", ""),
        Window::Auction => ("auction", ""),
        _ if args.windows_only => ("window_start, window_end", " EMIT ON WINDOW CLOSE"),
        Window::TumbleBidder => (
            "auction, bidder, window_start, window_end",
            " EMIT ON WINDOW CLOSE",
        ),
        _ => ("auction, window_start, window_end", " EMIT ON WINDOW CLOSE"),
    };
    let emit = if args.continuous { "" } else { emit };
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    run(
        &db,
        &format!(
            "CREATE MATERIALIZED VIEW v AS SELECT {keys}, \
             count(*) AS n, max(price) AS top FROM {window} \
             GROUP BY {keys}{emit}"
        ),
    )
    .await?;
    run(&db, "FLUSH").await?;
    let elapsed = started.elapsed();
    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    // Before the SELECT below, which decodes the whole view at once.
    let streaming_rss = peak_rss_mib();
    let answer = run(&db, "SELECT count(*) FROM v").await?;
    let rows = match answer.collected().await {
        Ok(StatementResult::Rows { batches, .. }) => {
            batches.first().map(arrow_value).unwrap_or_default()
        }
        _ => String::new(),
    };
    if let Ok(StatementResult::Rows { batches, .. }) = run(
        &db,
        "SELECT count(*), max(duration_ms) FROM tidemark_catalog.checkpoints",
    )
    .await?
    .collected()
    .await
    {
        if let Some(b) = batches.first() {
            let show = |c: usize| {
                arrow::util::display::array_value_to_string(b.column(c), 0).unwrap_or_default()
            };
            eprintln!(
                "checkpoints (the last 100): {}, longest {} ms",
                show(0),
                show(1)
            );
        }
    }
    // Where the memory is, once the view is whole.
    if let Ok(StatementResult::Rows { batches, .. }) =
        run(&db, "SELECT * FROM tidemark_catalog.memory")
            .await?
            .collected()
            .await
    {
        for batch in &batches {
            let show = |c: usize, r: usize| {
                arrow::util::display::array_value_to_string(batch.column(c), r).unwrap_or_default()
            };
            for r in 0..batch.num_rows() {
                eprintln!(
                    "memory: {} {} MiB",
                    show(0, r),
                    show(1, r).parse::<i64>().unwrap_or(0) >> 20
                );
            }
        }
    }
    let rate = args.rows as f64 / elapsed.as_secs_f64();
    let per_cpu = cpu.map_or("?".to_string(), |c| {
        format!(
            "{:.1} CPU s, {:.2} M rows per CPU second",
            c,
            args.rows as f64 / c / 1e6
        )
    });
    println!(
        "{:?}: {} rows ({:.0} MiB) in {:.2?}: {:.2} M rows/s at parallelism {} ({per_cpu}); {} view rows; peak RSS {} MiB while streaming, {} MiB after SELECT count(*)",
        args.window,
        args.rows,
        bytes as f64 / (1024.0 * 1024.0),
        elapsed,
        rate / 1e6,
        args.parallelism,
        rows,
        streaming_rss.map_or("?".to_string(), |m| m.to_string()),
        peak_rss_mib().map_or("?".to_string(), |m| m.to_string()),
    );
    db.shutdown().await;
    Ok(())
}

fn arrow_value(batch: &arrow::record_batch::RecordBatch) -> String {
    arrow::util::display::array_value_to_string(batch.column(0), 0).unwrap_or_default()
}
