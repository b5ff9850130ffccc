//! price-oracle: a decentralized price oracle for ETH/USD (and BTC/USD, SOL/USD with `--pairs`).
//!
//! Every node fetches each pair's price, signs it with its secp256k1 key the Ethereum way
//! (EIP-191, so anyone — even a contract — can verify it), gossips it over libp2p, co-signs its
//! peers' prices, and stores every price with enough distinct valid signatures in PostgreSQL
//! exactly once.
//!
//! # Layout
//!
//! In the order a price travels, from a node's start to a consumer's check. Dependencies run one
//! way, down this list's parts to two leaves every part may use, [`time`] and [`labels`];
//! `tests/architecture.rs` keeps the crate free of import cycles.
//!
//! - [`time`]: unix seconds, and a moment on both clocks.
//! - [`labels`]: enums whose variants have fixed texts — metric labels, reasons in logs.
//! - [`config`]: the command line, `ORACLE_*` environment variables, typed settings.
//! - [`logging`]: `log` + `fern` lines with timestamp, level, node name and target; libp2p's and
//!   sqlx's `tracing` events arrive through the same lines.
//! - [`identity`]: the key file and what derives from it — Ethereum address and libp2p PeerId.
//! - [`pair`]: the pairs a network can sign, and `--pairs`' set of them.
//! - [`domain`]: what every signature is bound to — the configuration digest (network, chain,
//!   verifier, member set, `f`) — and the fault bound `f` with the counts that follow from it.
//! - [`price`]: exchange sources, each parsing its real response into an exact [`price::UsdPrice`],
//!   and the median feed with timeouts and retries.
//! - [`trigger`]: when a round starts — a market move of `--deviation`, or the `--heartbeat` —
//!   and which member starts it (pure).
//! - [`id`]: Sonyflake-style ids for new prices.
//! - [`signed`]: the signed price, defined once — the fields the normative digest covers, the
//!   digest, EIP-191 signatures, a price with its signatures.
//! - [`message`]: what nodes gossip — a price, an attestation, a stored notice — on the wire.
//! - [`network`]: libp2p — the one task that owns the Swarm, message validation, discovery.
//! - [`membership`]: who counts — the `signers` table, narrowed by an optional static file, read
//!   again when it changes.
//! - [`committee`]: who observes a round and when — the committee of `3f + 1` drawn per round,
//!   and the fallback turns after it (pure).
//! - [`cosign`]: whether and when this node co-signs a peer's price — its turn, the decision
//!   (pure: returns actions).
//! - [`pool`]: the consensus state machine — pending → verified → stored (pure).
//! - [`writer`]: the lease's heartbeats, when to flush, the stop-time flush.
//! - [`store`]: PostgreSQL, and all of the SQL — migrations, the lease statement, the fenced
//!   exactly-once flush, members, reads.
//! - [`metrics`]: the node's counters, each declared once, in one prometheus-client registry;
//!   the network, store and writer report to it through probe traits of their own.
//! - [`node`]: the event loop that carries the parts' decisions out, from start to graceful
//!   stop, the settings it checks at start, and the wiring of a node in one place.
//! - [`http`]: `/health`, `/status` and `/metrics` for operators.
//! - [`api`]: the consumers' read API under `/v1` — stored prices with what verifies them, history
//!   in commit order, a live Server-Sent Events stream, the OpenAPI document.
//! - [`report`]: a signed price as the ABI bytes the on-chain verifier contract takes.
//! - [`audit`]: `oracle verify`'s row checks — the digest recomputed, every signature recovered.
//! - [`mock_exchange`]: a local stand-in for the exchanges, for tests and offline demos.
//! - [`commands`]: what each `oracle` subcommand does.
//! - `testkit` (feature `test-util`): the harness the tests, benches and `cluster-bench` share.

pub mod api;
pub mod audit;
pub mod commands;
pub mod committee;
pub mod config;
pub mod cosign;
pub mod domain;
pub mod http;
pub mod id;
pub mod identity;
pub mod labels;
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
pub mod signed;
pub mod store;
#[cfg(feature = "test-util")]
pub mod testkit;
pub mod time;
pub mod trigger;
pub mod writer;
