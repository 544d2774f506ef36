//! The real binary stops cleanly on SIGTERM: it takes a final checkpoint and
//! exits with success.

#![cfg(unix)]

mod common;

use std::process::Command;

use common::{fresh_dir, Server};

#[test]
fn sigterm_takes_a_final_checkpoint_and_exits() {
    let dir = fresh_dir("clean-stop");
    let mut server = Server::start(&dir);
    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    server.wait_for_log("final checkpoint committed");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}
