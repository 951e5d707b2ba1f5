//! Running the daemon: open the store, start expiry, listen on every address, serve until
//! SIGTERM or SIGINT, then stop in order: stop accepting (and remove the sockets), let calls in
//! flight finish up to the shutdown deadline, cancel the rest, undo every stage, stop expiry.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tracing::{debug, info, warn};

use super::authority::LocalAuthority;
use super::bind::{self, Listener};
use super::config::DaemonConfig;
use super::error::CasdError;
use super::lifecycle;
use super::limits;
use super::pruner::Pruner;
use super::signals::StopSignals;
use crate::expiry::Expiry;
use crate::grpc::{self, Shared};
use crate::store::Store;

/// How long blocking work (hashing, staging) still running at shutdown may take to finish.
const BLOCKING_GRACE: Duration = Duration::from_secs(2);

/// Runs the daemon until a stop signal; `Ok` once it has stopped cleanly.
pub fn run(config: &DaemonConfig) -> Result<(), CasdError> {
    limits::raise_open_files();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rebox-casd")
        .build()
        .map_err(CasdError::Setup)?;
    // First of all: a signal during start-up (opening a large store takes a while) then stops
    // the daemon cleanly as soon as it serves, instead of killing it.
    let signals = {
        let _runtime = runtime.enter();
        StopSignals::install().map_err(CasdError::Setup)?
    };
    std::fs::create_dir_all(&config.cache_dir)
        .map_err(|source| CasdError::CacheDir { path: config.cache_dir.clone(), source })?;
    let store = Store::open(&config.cache_dir, config.digest_function)?;
    store.make_fan_out_dirs();
    info!("cache directory {}: {} bytes in objects", config.cache_dir.display(), store.usage());
    let expiry = config.quota.clone().map(|quota| Expiry::start(&store, quota)).transpose()?;
    if let Some(expiry) = &expiry {
        let limits = expiry.limits();
        info!("quota: {} bytes (cleanup from {} down to {})", limits.high, limits.threshold, limits.low);
    }
    let shared = Arc::new(Shared { expiry, ..Shared::new(store, config.instance_name.clone()) });
    lifecycle::clean_leftovers(&shared);
    let pruner = Pruner::start(Arc::clone(&shared)).map_err(CasdError::Setup)?;

    let served = runtime.block_on(serve(config, Arc::clone(&shared), signals));
    // Drops every task still running: calls past the deadline are cancelled here.
    runtime.shutdown_timeout(BLOCKING_GRACE);
    pruner.stop();
    lifecycle::clean_stages(&shared);
    if let Some(expiry) = &shared.expiry {
        expiry.stop();
    }
    info!("stopped");
    served
}

/// Listens on every address and serves until a stop signal or a server failure.
async fn serve(
    config: &DaemonConfig,
    shared: Arc<Shared>,
    mut signals: StopSignals,
) -> Result<(), CasdError> {
    let mut listeners = Vec::with_capacity(config.binds.len());
    for address in &config.binds {
        listeners.push((address.to_string(), bind::bind(address, config.socket).await?));
    }
    let (stop, stopped) = watch::channel(false);
    let routes = grpc::routes(shared);
    let mut servers = JoinSet::new();
    let mut sockets = Vec::new();
    for (address, listener) in listeners {
        let router = Server::builder()
            .initial_stream_window_size(grpc::STREAM_WINDOW)
            .initial_connection_window_size(grpc::CONNECTION_WINDOW)
            .add_routes(routes.clone());
        let mut stopped = stopped.clone();
        let signal = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        info!("listening on {address}");
        let serve_error = move |source| CasdError::Serve { address, source };
        match listener {
            Listener::Unix(listener, file) => {
                sockets.push(file);
                let incoming =
                    UnixListenerStream::new(listener).map(|accepted| accepted.map(LocalAuthority::new));
                servers.spawn(async move {
                    router.serve_with_incoming_shutdown(incoming, signal).await.map_err(serve_error)
                });
            }
            Listener::Tcp(listener) => {
                let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                servers.spawn(async move {
                    router.serve_with_incoming_shutdown(incoming, signal).await.map_err(serve_error)
                });
            }
        }
    }

    let outcome = tokio::select! {
        signal = signals.recv() => {
            info!("{signal} received: stopping");
            Ok(())
        }
        Some(ended) = servers.join_next() => match ended {
            Ok(Err(error)) => Err(error),
            Ok(Ok(())) => Ok(()),
            Err(panicked) => Err(CasdError::Setup(std::io::Error::other(panicked))),
        },
    };
    // New clients find no socket; established connections are told to go away once idle.
    drop(sockets);
    let _ = stop.send(true);
    let deadline = config.shutdown_deadline;
    let drained = async { while servers.join_next().await.is_some() {} };
    tokio::select! {
        finished = tokio::time::timeout(deadline, drained) => match finished {
            Ok(()) => debug!("every call finished"),
            Err(_) => warn!("calls still running {} s after the stop signal: cancelling them", deadline.as_secs()),
        },
        signal = signals.recv() => warn!("{signal} received again: cancelling calls in flight"),
    }
    outcome
}
