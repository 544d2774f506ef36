//! The Postgres wire protocol front end: psql, drivers and the slt runner
//! talk to a [`Database`] through [`serve`].

mod encode;
mod handler;
mod text;
mod types;
mod value;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::database::Database;

/// Accepts connections on `listener` until the task is dropped, serving each
/// on its own task. A failed connection is logged and does not affect others;
/// a failed `accept` (e.g. out of file descriptors) is logged and retried
/// after a short pause rather than ending the server.
pub async fn serve(listener: TcpListener, db: Arc<Database>) -> std::io::Result<()> {
    let handlers = Arc::new(handler::Handlers::new(db));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                warn!(error = %err, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        debug!(%peer, "connection opened");
        let handlers = Arc::clone(&handlers);
        tokio::spawn(async move {
            match ::pgwire::tokio::process_socket(socket, None, handlers).await {
                Ok(()) => debug!(%peer, "connection closed"),
                Err(err) => info!(%peer, error = %err, "connection ended with an error"),
            }
        });
    }
}
