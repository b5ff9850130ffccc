//! Shared by the integration tests, beside the library's harness (`price_oracle::testkit`): a
//! whole test network ([`cluster`]), a TCP proxy that can cut or stall the connection to the
//! database, a check of the flush's fence, the EVM ([`evm`]), the `oracle` binary as the
//! tests run it ([`oracle`]) and rows no quorum of members made ([`forged`]).

pub mod cluster;
pub mod evm;
pub mod forged;
pub mod oracle;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Sends the log of every node a test runs to stderr, which nextest shows only for a test that
/// fails: a failed network test in CI then says what its nodes did. `ORACLE_TEST_LOG` sets the
/// filter (`--log-level`'s syntax); the default keeps the lease's changes and the stores.
pub fn log_to_stderr() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("ORACLE_TEST_LOG")
            .unwrap_or_else(|_| "warn,price_oracle=info,price_oracle::writer=debug".to_owned());
        let settings = price_oracle::logging::LogSettings {
            filter: filter
                .parse()
                .unwrap_or_else(|err| panic!("ORACLE_TEST_LOG: {err}")),
            format: price_oracle::logging::LogFormat::Text,
            file: None,
            node: None,
        };
        // Another test of this process may have installed one first: either is fine.
        let _ = price_oracle::logging::init(&settings);
    });
}

/// Installed in test databases only: refuses any row whose writer does not hold the lease at the
/// moment of its insert, an independent check of the flush's fence.
pub const LEASE_CHECK_TRIGGER: &str = r#"
CREATE FUNCTION lease_check() RETURNS trigger AS $$
BEGIN
  IF NEW.written_by IS DISTINCT FROM (SELECT node_address FROM heartbeat
      ORDER BY "timestamp" DESC, node_address DESC LIMIT 1) THEN
    RAISE EXCEPTION 'row % written by % without the lease', NEW.id, NEW.written_by;
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER lease_check BEFORE INSERT ON prices FOR EACH ROW EXECUTE FUNCTION lease_check();
"#;

/// Forwards a local port to the database. `cut` breaks every connection and refuses new ones
/// until `restore`, like a crashed server; `stall` keeps connections open but forwards nothing
/// until `resume`, like a paused process or a partition without resets; `stall_after` does the
/// same the moment a client sends a given statement.
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    flow: Arc<Flow>,
}

/// Whether the proxy forwards, and what makes it stop.
struct Flow {
    flowing: watch::Sender<bool>,
    stall_after: Mutex<Option<Vec<u8>>>,
}

impl Flow {
    /// Called with each chunk a client sent, once it reached the server.
    fn sent(&self, chunk: &[u8]) {
        let mut trigger = self.stall_after.lock().expect("proxy trigger");
        let hit = trigger.as_ref().is_some_and(|pattern| {
            chunk
                .windows(pattern.len())
                .any(|w| w == pattern.as_slice())
        });
        if hit {
            *trigger = None;
            self.flowing.send_replace(false);
        }
    }
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let proxy = Self {
            addr: listener.local_addr().expect("proxy address"),
            upstream,
            tasks: Arc::default(),
            flow: Arc::new(Flow {
                flowing: watch::Sender::new(true),
                stall_after: Mutex::new(None),
            }),
        };
        proxy.serve(listener);
        proxy
    }

    /// The database URL with host and port replaced by the proxy's.
    pub fn url_through(&self, url: &str) -> String {
        let mut url = reqwest::Url::parse(url).expect("URL parses");
        url.set_host(Some("127.0.0.1")).expect("host");
        url.set_port(Some(self.addr.port())).expect("port");
        url.to_string()
    }

    fn serve(&self, listener: TcpListener) {
        let upstream = self.upstream;
        let tasks = Arc::clone(&self.tasks);
        let flow = Arc::clone(&self.flow);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flow = Arc::clone(&flow);
                let connection = tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        tokio::join!(
                            pipe(client_read, server_write, &flow, true),
                            pipe(server_read, client_write, &flow, false),
                        );
                    }
                });
                tasks.lock().expect("proxy tasks").push(connection);
            }
        });
        self.tasks.lock().expect("proxy tasks").push(accept);
    }

    pub fn cut(&self) {
        for task in self.tasks.lock().expect("proxy tasks").drain(..) {
            task.abort();
        }
    }

    pub async fn restore(&self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind proxy");
        self.serve(listener);
    }

    pub fn stall(&self) {
        self.flow.flowing.send_replace(false);
    }

    /// Stalls right after a client's message containing `statement` reaches the server; the
    /// client must not use TLS (`sslmode=disable`) for the statement to be seen.
    pub fn stall_after(&self, statement: &str) {
        *self.flow.stall_after.lock().expect("proxy trigger") = Some(statement.as_bytes().to_vec());
    }

    /// Whether the proxy holds its traffic (after `stall`, or once `stall_after` fired).
    pub fn is_stalled(&self) -> bool {
        !*self.flow.flowing.borrow()
    }

    pub fn resume(&self) {
        self.flow.flowing.send_replace(true);
    }
}

/// Copies one direction of a connection, holding the bytes while the proxy is stalled.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    flow: &Flow,
    from_client: bool,
) {
    let mut flowing = flow.flowing.subscribe();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if flowing.wait_for(|flowing| *flowing).await.is_err()
            || to.write_all(&buffer[..read]).await.is_err()
        {
            break;
        }
        if from_client {
            flow.sent(&buffer[..read]);
        }
    }
    let _ = to.shutdown().await;
}

/// The host and port of a database URL.
pub async fn socket_of(url: &str) -> SocketAddr {
    let url = reqwest::Url::parse(url).expect("URL parses");
    let host = url.host_str().expect("host").to_owned();
    let port = url.port().unwrap_or(5432);
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("resolve")
        .next()
        .expect("an address")
}
