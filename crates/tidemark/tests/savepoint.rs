//! `CREATE SAVEPOINT` on the real binary, and a new server started from the
//! savepoint with `--restore-from`: it has the catalog and the rows as of the
//! savepoint, not what came after.

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
