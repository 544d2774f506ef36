//! `CREATE SAVEPOINT` on the real binary, and a new server started from the
//! savepoint with `--restore-from`: it has the catalog and the rows as of the
//! savepoint, not what came after; and the copies of recent checkpoints the
//! server keeps by itself.

#![cfg(unix)]

mod common;

use common::{fresh_dir, rows, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_starts_from_a_savepoint() {
    let dir = fresh_dir("savepoint-origin");
    let saved = fresh_dir("savepoint-copy").join("monday");
    let server = Server::start(&dir);
    let client = server.connect().await;
    for sql in [
        "CREATE TABLE t (k INT PRIMARY KEY, v INT)",
        "INSERT INTO t VALUES (1, 10), (2, 20)",
        "CREATE MATERIALIZED VIEW total AS SELECT sum(v) AS s FROM t",
        "FLUSH",
    ] {
        client.simple_query(sql).await.expect(sql);
    }
    let create = format!("CREATE SAVEPOINT '{}'", saved.display());
    client.simple_query(&create).await.expect("savepoint");
    let again = client.simple_query(&create).await.expect_err("exists");
    assert_eq!(again.code().map(|c| c.code()), Some("58P02"), "{again}");
    client
        .simple_query("INSERT INTO t VALUES (3, 30); FLUSH")
        .await
        .unwrap();
    server.kill_9();

    // Not into a data directory that already has state.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--data-dir", dir.to_str().unwrap(), "--restore-from"])
        .arg(&saved)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("already holds state"), "{stderr}");

    let restored_dir = fresh_dir("savepoint-restored");
    let restored = Server::start_with(&restored_dir, &["--restore-from", saved.to_str().unwrap()]);
    let client = restored.connect().await;
    client.simple_query("FLUSH").await.unwrap();
    assert_eq!(
        rows(&client, "SELECT * FROM t ORDER BY k").await,
        ["1|10", "2|20"]
    );
    assert_eq!(rows(&client, "SELECT s FROM total").await, ["30"]);
    restored.kill_9();
    for d in [dir, saved, restored_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The server keeps copies of its newest checkpoints; the oldest one kept
/// starts a new server with exactly the rows committed by its epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_checkpoints_start_a_server() {
    let dir = fresh_dir("retained-origin");
    let server = Server::start_with(
        &dir,
        &["--retain-interval", "200ms", "--retained-checkpoints", "2"],
    );
    let client = server.connect().await;
    client
        .simple_query("CREATE TABLE t (k INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    let epoch_sql = "SELECT max(epoch) FROM tidemark_catalog.checkpoints";
    let retained_sql = "SELECT epoch, path FROM tidemark_catalog.retained_checkpoints \
                        ORDER BY epoch";
    // The epoch that committed each round of 10 rows.
    let mut committed = Vec::new();
    for round in 0..4 {
        let values: Vec<String> = (0..10)
            .map(|i| format!("({}, 1)", round * 10 + i))
            .collect();
        let sql = format!("INSERT INTO t VALUES {}; FLUSH", values.join(", "));
        client.simple_query(&sql).await.unwrap();
        let epoch: u64 = rows(&client, epoch_sql).await[0].parse().unwrap();
        committed.push(epoch);
        // Until a copy covers the round.
        loop {
            let kept = rows(&client, retained_sql).await;
            let newest = kept
                .last()
                .map(|r| r.split('|').next().unwrap().parse::<u64>().unwrap());
            if newest.is_some_and(|e| e >= epoch) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let kept = rows(&client, retained_sql).await;
    assert_eq!(kept.len(), 2, "{kept:?}");
    let listed_oldest: u64 = kept[0].split('|').next().unwrap().parse().unwrap();
    server.kill_9();
    // A copy taken since the listing may have replaced the oldest; the
    // folder changes no more now. A kill between a new copy and deleting the
    // oldest leaves one too many, which a new server would delete.
    let mut copies: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            Some((name.strip_prefix("epoch-")?.parse().ok()?, e.path()))
        })
        .collect();
    copies.sort();
    let (epoch, oldest) = copies[copies.len() - 2].clone();
    assert!(epoch >= listed_oldest, "{copies:?} after listing {kept:?}");
    let oldest = oldest.to_str().unwrap();
    // A round's rows commit at its FLUSH's epoch or at a periodic one just
    // before it, after the previous round's.
    let low = 10 * committed.iter().filter(|&&e| e <= epoch).count();
    let high = 10
        * (0..committed.len())
            .filter(|&r| r == 0 || committed[r - 1] < epoch)
            .count();

    let restored_dir = fresh_dir("retained-restored");
    let restored = Server::start_with(&restored_dir, &["--restore-from", oldest]);
    let client = restored.connect().await;
    let count: usize = rows(&client, "SELECT count(*) FROM t").await[0]
        .parse()
        .unwrap();
    assert!(
        (low..=high).contains(&count) && count.is_multiple_of(10),
        "{count} rows as of epoch {epoch}, rounds committed by {committed:?}"
    );
    restored.kill_9();
    for d in [dir, restored_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}
