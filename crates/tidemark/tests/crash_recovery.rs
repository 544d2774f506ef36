//! `kill -9` on the real binary, several times while views are being computed
//! from a file, a table and a paced generator, each time restarting on the
//! same data directory: every view resumes from its checkpoint (sources at
//! their offsets), and once the input is consumed every view equals, row for
//! row, what a server that never crashed computes, late-row counters
//! included, and every table row a checkpoint acknowledged is there exactly
//! once.

#![cfg(unix)]

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::{fresh_dir, rows, Server};
use tokio_postgres::Client;

/// Rows in the source file, read at full speed (before the first kill).
const ROWS: u64 = 400_000;

/// Rows of the paced generator, read over several seconds: the kills land
/// while views are still reading it, so restarts resume mid-input.
const TICKS: u64 = 600_000;

/// Bids with event time moving 1000 rows per second and up to 3 s of
/// disorder, so some rows are late for a 1 s watermark delay.
fn write_bids(path: &Path) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut seed: u64 = 42;
    for i in 0..ROWS {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let auction = (seed >> 33) % 50;
        let price = (seed >> 20) % 1000;
        let jitter = (seed >> 40) % 3000;
        let ms = (i + 10_000 - jitter) as i64;
        let (secs, millis) = (ms / 1000, ms % 1000);
        let ts = format!(
            "2024-01-01 {:02}:{:02}:{:02}.{millis:03}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        writeln!(file, "{auction},{price},{ts}").unwrap();
    }
}

fn ddl(csv: &Path) -> Vec<String> {
    vec![
        format!(
            "CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP, \
             WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
             WITH (connector = 'file', path = '{}', format = 'csv')",
            csv.display()
        ),
        "CREATE TABLE notes (id BIGINT PRIMARY KEY, auction BIGINT, note VARCHAR)".into(),
        "CREATE MATERIALIZED VIEW per_auction AS SELECT auction, count(*) AS n, \
         sum(price) AS total, max(price) AS top FROM bids GROUP BY auction"
            .into(),
        "CREATE MATERIALIZED VIEW per_10s AS SELECT auction, window_start, count(*) AS n, \
         min(price) AS low FROM TUMBLE(bids, ts, INTERVAL '10' SECOND) \
         GROUP BY auction, window_start EMIT ON WINDOW CLOSE"
            .into(),
        "CREATE MATERIALIZED VIEW sessions AS SELECT auction, window_start, window_end, \
         count(*) AS n FROM SESSION(bids, ts, INTERVAL '2' SECOND) \
         GROUP BY auction, window_start, window_end"
            .into(),
        "CREATE MATERIALIZED VIEW busy AS SELECT n / 1000 AS bucket, count(*) AS auctions \
         FROM per_auction GROUP BY n / 1000"
            .into(),
        "CREATE MATERIALIZED VIEW noted AS SELECT auction, count(*) AS notes FROM notes \
         GROUP BY auction"
            .into(),
        // Event time at most 1 s out of order against a 1 s delay: no row
        // is ever late, whatever the batches, so the paced reads need not
        // be cut at the same rows in every run.
        format!(
            "CREATE SOURCE ticks (auction BIGINT, price BIGINT, ts TIMESTAMP, \
             WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
             WITH (connector = 'datagen', number_of_rows = '{TICKS}', \
             rows_per_second = '100000', seed = '7', splits = '2', \
             'fields.auction.min' = '1', 'fields.auction.max' = '50', \
             'fields.price.min' = '1', 'fields.price.max' = '1000', \
             'fields.ts.start' = '2024-01-01 00:00:00', 'fields.ts.rate' = '1000', \
             'fields.ts.max_disorder' = '1s')"
        ),
        "CREATE MATERIALIZED VIEW tick_hop AS SELECT auction, window_start, count(*) AS n, \
         sum(price) AS total FROM HOP(ticks, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) \
         GROUP BY auction, window_start EMIT ON WINDOW CLOSE"
            .into(),
        "CREATE MATERIALIZED VIEW tick_sessions AS SELECT auction, window_start, \
         count(*) AS n, max(price) AS top FROM SESSION(ticks, ts, INTERVAL '1' SECOND) \
         GROUP BY auction, window_start"
            .into(),
        "CREATE MATERIALIZED VIEW tick_totals AS SELECT auction, count(*) AS n, \
         sum(price) AS total, min(price) AS low FROM ticks GROUP BY auction"
            .into(),
    ]
}

/// Every view's rows in a fixed order, the late-row counters, and the table.
async fn contents(client: &Client) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (name, order) in [
        ("per_auction", "auction"),
        ("per_10s", "auction, window_start"),
        ("sessions", "auction, window_start"),
        ("busy", "bucket"),
        ("noted", "auction"),
        ("notes", "id"),
        ("tick_hop", "auction, window_start"),
        ("tick_sessions", "auction, window_start"),
        ("tick_totals", "auction"),
    ] {
        let sql = format!("SELECT * FROM {name} ORDER BY {order}");
        out.push((name.to_string(), rows(client, &sql).await));
    }
    let sql = "SELECT name, late_rows_dropped FROM tidemark_catalog.streaming_jobs ORDER BY name";
    out.push(("late rows".into(), rows(client, sql).await));
    out
}

/// Waits until the view reading the generator slowest has read `target`
/// rows; returns how many it had then.
async fn read_so_far(client: &Client, target: u64) -> u64 {
    let sql = "SELECT min(rows_in) FROM tidemark_catalog.streaming_jobs \
               WHERE name LIKE 'tick%'";
    loop {
        let read: u64 = rows(client, sql).await[0].parse().unwrap();
        if read >= target {
            assert!(read < TICKS, "the views read every row before the kill");
            return read;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Table rows are written in rounds of 100, each acknowledged by FLUSH.
fn notes_round(round: u64) -> String {
    let values: Vec<String> = (0..100)
        .map(|i| {
            let id = round * 100 + i;
            format!("({id}, {}, 'note {id}')", id % 50)
        })
        .collect();
    format!("INSERT INTO notes VALUES {}", values.join(", "))
}

const ROUNDS: u64 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_after_kill_9_equal_an_uncrashed_run() {
    let work = fresh_dir("crash-input");
    let csv = work.join("bids.csv");
    write_bids(&csv);

    // The run that never crashes.
    let expected = {
        let dir = fresh_dir("crash-reference");
        let server = Server::start(&dir);
        let client = server.connect().await;
        for sql in ddl(&csv) {
            client.simple_query(&sql).await.expect(&sql);
        }
        for round in 0..ROUNDS {
            client.simple_query(&notes_round(round)).await.unwrap();
        }
        client.simple_query("FLUSH").await.unwrap();
        let expected = contents(&client).await;
        server.kill_9();
        let _ = std::fs::remove_dir_all(dir);
        expected
    };
    assert!(expected.iter().all(|(_, rows)| !rows.is_empty()));
    let late = &expected.last().unwrap().1;
    assert!(
        late.iter().any(|r| !r.ends_with("|0")),
        "the input has late rows: {late:?}"
    );

    // The run that is killed at random moments.
    let dir = fresh_dir("crash-crashed");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill timings seed: {seed}");
    // Unlike the reference run, a GROUP BY keeps no group in memory past
    // its commit: every row reads its group back from the store.
    let evicting = ["--operator-cache-size", "0"];
    let mut server = Server::start_with(&dir, &evicting);
    let client = server.connect().await;
    for sql in ddl(&csv) {
        client.simple_query(&sql).await.expect(&sql);
    }
    let mut round = 0;
    for kill in 1..=3 {
        // Table rows acknowledged by a checkpoint before the kill must
        // survive it. A savepoint takes one (FLUSH would also wait for the
        // views to read the whole file).
        let client = server.connect().await;
        client.simple_query(&notes_round(round)).await.unwrap();
        let savepoint = work.join(format!("savepoint-{kill}"));
        let sql = format!("CREATE SAVEPOINT '{}'", savepoint.display());
        client.simple_query(&sql).await.unwrap();
        round += 1;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Killed while the views read the generator: somewhere in the
        // kill-th fifth of its rows, so each restart resumes mid-input.
        let fifth = TICKS / 5;
        let at = fifth * kill + seed % fifth;
        let progress = read_so_far(&client, at).await;
        eprintln!("kill {kill} after {progress} of {TICKS} rows");
        server.kill_9();
        server = Server::start_with(&dir, &evicting);
        // Every view resumes from its checkpoint: none is recomputed.
        let resumed = server
            .seen
            .iter()
            .filter(|l| l.contains("resumed from its checkpoint"))
            .count();
        let recomputed: Vec<&String> = server
            .seen
            .iter()
            .filter(|l| l.contains("recomputing"))
            .collect();
        assert_eq!(
            (resumed, recomputed),
            (8, Vec::<&String>::new()),
            "views resumed"
        );
    }
    let client = server.connect().await;
    while round < ROUNDS {
        client.simple_query(&notes_round(round)).await.unwrap();
        round += 1;
    }
    client.simple_query("FLUSH").await.unwrap();
    let got = contents(&client).await;
    for ((name, want), (_, have)) in expected.iter().zip(&got) {
        assert_eq!(
            have,
            want,
            "{name} differs from the uncrashed run ({} rows vs {})",
            have.len(),
            want.len()
        );
    }
    server.kill_9();
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(work);
}
