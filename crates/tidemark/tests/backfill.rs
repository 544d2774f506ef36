//! Views created over relations that take many checkpoints to send
//! (`--backfill-rows 1`: one page of each upstream per checkpoint) while
//! other sessions change those relations equal the batch answer, and a
//! windowed view created that way over a table with event time equals one
//! created before its rows; a server killed while a view is created
//! recomputes it at restart.

#![cfg(unix)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::{fresh_dir, rows, Server};
use tokio_postgres::Client;

/// Each view, with the query it was created from.
const VIEWS: [(&str, &str); 4] = [
    (
        "by_k",
        "SELECT k, count(*) AS n, sum(v) AS s FROM items GROUP BY k",
    ),
    ("copy", "SELECT id, k, v FROM items"),
    (
        "bag_by_k",
        "SELECT k, count(*) AS n, sum(v) AS s FROM bag GROUP BY k",
    ),
    (
        "base_by_v",
        "SELECT v % 11 AS r, count(*) AS n, sum(k) AS s FROM base GROUP BY v % 11",
    ),
];

async fn run(client: &Client, statements: &[&str]) {
    for sql in statements {
        client.simple_query(sql).await.expect(sql);
    }
}

async fn sorted(client: &Client, sql: &str) -> Vec<String> {
    let mut got = rows(client, sql).await;
    got.sort();
    got
}

/// Tables of 120,000 keyed rows and 90,000 multiset rows, and a view of
/// every row of the first: each upstream partition is many pages.
async fn fill(client: &Client) {
    run(
        client,
        &[
            "CREATE TABLE items (id INT PRIMARY KEY, k INT, v INT)",
            "INSERT INTO items SELECT value, value % 97, value % 1000 FROM generate_series(1, 120000)",
            "CREATE TABLE bag (k INT, v INT)",
            "INSERT INTO bag SELECT value % 500, value % 7 FROM generate_series(1, 90000)",
            "CREATE MATERIALIZED VIEW base AS SELECT k, v FROM items",
            "FLUSH",
        ],
    )
    .await;
}

/// Changes all over both tables, statement after statement, until `stop`:
/// updates, deletes and inserts on rows a snapshot has and has not reached.
async fn write_until(client: Client, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = 1 + (i * 7919) % 120_000;
        let statements = [
            format!("UPDATE items SET v = v + 1 WHERE id % 101 = {}", i % 101),
            format!("DELETE FROM items WHERE id = {id}"),
            format!(
                "INSERT INTO items VALUES ({}, {}, {})",
                200_000 + i,
                i % 97,
                i % 1000
            ),
            format!("INSERT INTO bag VALUES ({}, {})", i % 500, i % 7),
            format!(
                "DELETE FROM bag WHERE k = {} AND v = {}",
                (i * 13) % 500,
                i % 7
            ),
            format!("UPDATE bag SET v = v + 1 WHERE k = {}", (i * 31) % 500),
        ];
        for sql in &statements {
            client.simple_query(sql).await.expect(sql);
        }
        done.fetch_add(1, Ordering::Relaxed);
        i += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_created_while_their_inputs_change_equal_the_batch_answer() {
    let dir = fresh_dir("backfill");
    let server = Server::start_with(&dir, &["--backfill-rows", "1"]);
    let client = server.connect().await;
    fill(&client).await;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_until(
        server.connect().await,
        Arc::clone(&stop),
        Arc::clone(&done),
    ));
    let mut during = Vec::new();
    for (name, query) in VIEWS {
        let before = done.load(Ordering::Relaxed);
        run(
            &client,
            &[&format!("CREATE MATERIALIZED VIEW {name} AS {query}")],
        )
        .await;
        during.push(done.load(Ordering::Relaxed) - before);
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    run(&client, &["FLUSH"]).await;
    assert!(
        during.iter().sum::<u64>() >= 4,
        "rounds of changes while the views were created: {during:?}"
    );
    for (name, query) in VIEWS {
        let view = sorted(&client, &format!("SELECT * FROM {name}")).await;
        let batch = sorted(&client, query).await;
        assert_eq!(view.len(), batch.len(), "{name}");
        assert!(view == batch, "{name} differs from its query");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_whose_creation_a_crash_cut_short_is_recomputed() {
    let dir = fresh_dir("backfill-crash");
    let server = Server::start_with(&dir, &["--backfill-rows", "1"]);
    let client = server.connect().await;
    fill(&client).await;
    let (name, query) = VIEWS[0];
    let creating = tokio::spawn(async move {
        let sql = format!("CREATE MATERIALIZED VIEW {name} AS {query}");
        client.simple_query(&sql).await.map(|_| ())
    });
    // Some checkpoints into sending 30 pages, one per checkpoint.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let finished = creating.is_finished();
    server.kill_9();
    let _ = creating.await;

    let server = Server::start_with(&dir, &["--backfill-rows", "1"]);
    let client = server.connect().await;
    let exists = !rows(
        &client,
        &format!("SELECT 1 FROM tidemark_catalog.streaming_jobs WHERE name = '{name}'"),
    )
    .await
    .is_empty();
    if !finished && exists {
        // Its catalog entry committed with its first checkpoint, its state
        // did not: it is computed again, not resumed from part of it.
        assert!(server
            .seen
            .iter()
            .any(|l| l.contains("recomputing from its inputs")));
    }
    if !exists {
        run(
            &client,
            &[&format!("CREATE MATERIALIZED VIEW {name} AS {query}")],
        )
        .await;
    }
    run(&client, &["FLUSH"]).await;
    let view = sorted(&client, &format!("SELECT * FROM {name}")).await;
    let batch = sorted(&client, query).await;
    assert_eq!(view.len(), 97);
    assert!(view == batch, "{name} differs from its query");
}

/// One statement of 2000 rows of event time around `2 * i` seconds, up to
/// 4 s behind it: the table's watermark (2 s behind its latest row) makes
/// some of each statement's rows late.
fn events(i: u64) -> String {
    format!(
        "INSERT INTO ev SELECT value % 13, to_timestamp(1767225600 + {} + (value % 9) - 4) \
         FROM generate_series(1, 2000)",
        2 * i
    )
}

const WINDOWED: &str = "SELECT k, window_start, count(*) AS n \
                        FROM TUMBLE(ev, ts, INTERVAL '10' SECOND) \
                        GROUP BY k, window_start, window_end";

/// A windowed view created, while rows keep arriving, over a table with
/// event time equals one created before the rows: the snapshot replays the
/// table in arrival order with its watermarks, so the rows that were late
/// on arrival are late for the new view too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_view_created_late_drops_the_rows_that_arrived_late() {
    let dir = fresh_dir("backfill-events");
    // At one actor per fragment: with several, the aggregate merges the
    // watermarks of its parallel inputs, and which rows are late depends
    // on how those inputs interleave, for any view.
    let server = Server::start_with(&dir, &["--backfill-rows", "1", "--parallelism", "1"]);
    let client = server.connect().await;
    run(
        &client,
        &[
            "CREATE TABLE ev (k BIGINT, ts TIMESTAMP, \
             WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) APPEND ONLY",
            &format!("CREATE MATERIALIZED VIEW early AS {WINDOWED}"),
        ],
    )
    .await;
    for i in 0..30 {
        run(&client, &[&events(i)]).await;
    }
    run(&client, &["FLUSH"]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, stop) = (server.connect().await, Arc::clone(&stop));
        tokio::spawn(async move {
            let mut i = 30;
            while !stop.load(Ordering::Relaxed) {
                client.simple_query(&events(i)).await.expect("insert");
                i += 1;
            }
        })
    };
    run(
        &client,
        &[&format!("CREATE MATERIALIZED VIEW late AS {WINDOWED}")],
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    run(&client, &["FLUSH"]).await;

    let dropped = rows(
        &client,
        "SELECT late_rows_dropped FROM tidemark_catalog.streaming_jobs WHERE name = 'early'",
    )
    .await;
    assert!(dropped[0].parse::<i64>().unwrap() > 0, "no row was late");
    let early = sorted(&client, "SELECT * FROM early").await;
    let late = sorted(&client, "SELECT * FROM late").await;
    assert_eq!(early.len(), late.len());
    assert!(early == late, "the view created late differs");
}
