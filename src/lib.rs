//! price-oracle: a decentralized price oracle for ETH/USD (and BTC/USD, SOL/USD with `--pairs`).
//!
//! Every node fetches each pair's price, signs it with its secp256k1 key the Ethereum way
//! (EIP-191, so anyone — even a contract — can verify it), gossips it over libp2p, co-signs its
//! peers' prices, and stores every price with enough distinct valid signatures in PostgreSQL
//! exactly once.
//!
//! # Layout
//!
//! In the order a node's life uses them:
//!
//! - [`config`]: the command line, `ORACLE_*` environment variables, typed settings.
//! - [`logging`]: `log` + `fern` lines with timestamp, level, node name and target.
//! - [`identity`]: the key file and what derives from it — Ethereum address and libp2p PeerId.
//! - [`pair`]: the pairs a network can sign, and `--pairs`' set of them.
//! - [`price`]: exchange sources, each parsing its real response into an exact [`price::UsdPrice`],
//!   and the median feed with timeouts and retries.
//! - [`id`]: Sonyflake-style ids for new prices.
//! - [`message`]: the signed price message — wire format, normative digest, sign and verify.
//! - [`membership`]: who counts — the `signers` table, narrowed by an optional static file.
//! - [`metrics`]: the counters every part updates, in one prometheus-client registry.
//! - [`network`]: libp2p — the one task that owns the Swarm, message validation, discovery.
//! - [`committee`]: which members co-sign a price at once, and when the others step in.
//! - [`pool`]: the consensus state machine — pending → verified → stored; pure, no IO.
//! - [`store`]: PostgreSQL — migrations, the heartbeat lease, the fenced exactly-once flush.
//! - [`node`]: the event loop tying them together, from start to graceful stop.
//! - [`http`]: `/health`, `/status` and `/metrics` for operators.
//! - [`api`]: the consumers' read API under `/v1` — stored prices with what verifies them, history
//!   in commit order, a live Server-Sent Events stream, the OpenAPI document.
//! - [`audit`]: `oracle verify`'s row checks — the digest recomputed, every signature recovered.
//! - [`report`]: a stored price as the ABI bytes the on-chain verifier contract takes.
//! - [`mock_exchange`]: a local stand-in for the exchanges, for tests and offline demos.
//! - [`commands`]: what each `oracle` subcommand does.

pub mod api;
pub mod audit;
pub mod commands;
pub mod committee;
pub mod config;
pub mod http;
pub mod id;
pub mod identity;
pub mod logging;
pub mod membership;
pub mod message;
pub mod metrics;
pub mod mock_exchange;
pub mod network;
pub mod node;
pub mod pair;
pub mod pool;
pub mod price;
pub mod report;
pub mod store;
