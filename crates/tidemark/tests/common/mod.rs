//! The real `tidemark` binary, started on a data directory, for tests that
//! stop it the hard way.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// A server process, the port it listens on, and its log lines.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// Fed by a thread that reads the server's stdout to its end, so the
    /// server never blocks on a full pipe.
    log: mpsc::Receiver<String>,
    /// Every log line read so far.
    pub seen: Vec<String>,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[])
    }

    /// Starts the server with `extra` options after the usual ones.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args([
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--parallelism",
                "2",
                "--checkpoint-interval",
                "200ms",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the server starts");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            child,
            port: 0,
            log: rx,
            seen: Vec::new(),
        };
        let line = server.wait_for_log("listening on ");
        let addr = line[line.find("listening on ").unwrap() + "listening on ".len()..].trim();
        server.port = addr.rsplit(':').next().unwrap().parse().unwrap();
        server
    }

    /// The next log line containing `needle`; panics after two minutes.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        loop {
            match self.log.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!("no log line with {needle:?}: {e}"),
            }
        }
    }

    pub async fn connect(&self) -> Client {
        let (client, connection) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={} user=tidemark dbname=dev", self.port),
            NoTls,
        )
        .await
        .expect("connects");
        tokio::spawn(connection);
        client
    }

    pub fn kill_9(self) {
        // Drop does it.
    }
}

/// A test that fails midway must not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rows of `sql` as text, in the order the query returns them.
pub async fn rows(client: &Client, sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    for message in client.simple_query(sql).await.expect(sql) {
        if let SimpleQueryMessage::Row(row) = message {
            let values: Vec<&str> = (0..row.len())
                .map(|i| row.get(i).unwrap_or("NULL"))
                .collect();
            out.push(values.join("|"));
        }
    }
    out
}

/// An empty directory under the system temp dir.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tidemark-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
