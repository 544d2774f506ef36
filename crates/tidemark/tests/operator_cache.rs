//! A `GROUP BY` whose groups leave memory (`--operator-cache-size 0`) reads
//! them back from the store and still equals the batch answer, through
//! inserts, updates, deletes and a `kill -9`; after a restart its groups are
//! read back when rows reach them, not loaded at start.

#![cfg(unix)]

mod common;

use common::{fresh_dir, rows, Server};
use tokio_postgres::Client;

const VIEW: &str = "SELECT k, count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi \
                    FROM t GROUP BY k";

/// The view, and the batch answer of its query, both sorted.
async fn view_and_batch(client: &Client) -> (Vec<String>, Vec<String>) {
    let mut view = rows(client, "SELECT * FROM g").await;
    let mut batch = rows(client, VIEW).await;
    view.sort();
    batch.sort();
    (view, batch)
}

/// (cached_groups, groups_read_back) of the view's job.
async fn cache_figures(client: &Client) -> (i64, i64) {
    let got = rows(
        client,
        "SELECT cached_groups, groups_read_back FROM tidemark_catalog.streaming_jobs \
         WHERE name = 'g'",
    )
    .await;
    let (cached, read) = got[0].split_once('|').unwrap();
    (cached.parse().unwrap(), read.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_evicted_to_the_store_are_read_back() {
    let dir = fresh_dir("operator-cache");
    let server = Server::start_with(&dir, &["--operator-cache-size", "0"]);
    let client = server.connect().await;
    for sql in [
        "CREATE TABLE t (k INT, v INT)",
        "INSERT INTO t SELECT value % 500, value FROM generate_series(1, 2000)",
        &format!("CREATE MATERIALIZED VIEW g AS {VIEW}"),
        "FLUSH",
        // The groups stored by the first checkpoint leave memory at the
        // next, once the first has committed.
        "FLUSH",
    ] {
        client.simple_query(sql).await.expect(sql);
    }
    let (cached, _) = cache_figures(&client).await;
    assert_eq!(cached, 0, "no group stays in memory");

    for sql in [
        "DELETE FROM t WHERE v % 3 = 0",
        "UPDATE t SET v = v + 7 WHERE v % 5 = 0",
        // Every row of keys 0..9 goes: their groups are deleted.
        "DELETE FROM t WHERE k < 10",
        "INSERT INTO t SELECT value % 700, value FROM generate_series(5000, 6000)",
        "FLUSH",
    ] {
        client.simple_query(sql).await.expect(sql);
    }
    let (view, batch) = view_and_batch(&client).await;
    assert_eq!(view, batch);
    assert_eq!(view.len(), 700);
    let (_, read) = cache_figures(&client).await;
    assert!(read >= 490, "groups read back: {read}");

    // A restart with the default cache: groups are read back as rows reach
    // them, and then stay in memory.
    server.kill_9();
    let server = Server::start(&dir);
    assert!(server
        .seen
        .iter()
        .any(|l| l.contains("resumed from its checkpoint")));
    let client = server.connect().await;
    assert_eq!(
        cache_figures(&client).await,
        (0, 0),
        "nothing loaded at start"
    );
    for sql in [
        "INSERT INTO t SELECT value % 300, value FROM generate_series(7000, 7300)",
        "DELETE FROM t WHERE k = 299",
        "FLUSH",
    ] {
        client.simple_query(sql).await.expect(sql);
    }
    let (view, batch) = view_and_batch(&client).await;
    assert_eq!(view, batch);
    let (cached, read) = cache_figures(&client).await;
    assert_eq!(read, 300, "each group the new rows reach is read back once");
    assert_eq!(cached, 299, "they stay in memory, but the deleted one");
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}
