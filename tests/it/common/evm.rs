//! The contracts in an in-memory EVM (revm, Cancun rules, as they are compiled for): deploys the
//! committed artifacts `contracts/PriceVerifier.json` and `contracts/PriceFeed.json` on a chain
//! of a given id, calls them in transactions at a block time the test sets, and decodes their
//! custom errors and events; and builds the committed reports (protocol v2) they take.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256, Bytes, I256, Log, U256, keccak256};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{SolCall, SolConstructor, SolEvent, SolInterface, SolValue, sol};
use price_oracle::domain::{Deployment, FaultBound, config_digest, members_digest};
use price_oracle::pair::Pair;
use price_oracle::price::UsdPrice;
use price_oracle::signed::{
    EthSignature, Observation, Report, Round, SignedObservation, report_digest,
};
use revm::context::result::{ExecutionResult, Output};
use revm::context::{CfgEnv, Context, TxEnv};
use revm::database::{CacheDB, EmptyDB};
use revm::primitives::TxKind;
use revm::primitives::hardfork::SpecId;
use revm::{ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext, MainnetEvm};

sol! {
    /// The ABI of `contracts/PriceVerifier.sol`, by hand; a test compares it with the artifact's.
    #[derive(Debug, PartialEq, Eq)]
    contract PriceVerifier {
        constructor(
            bytes32 network_,
            address[] members_,
            uint64 f_,
            uint64 maxAge_,
            uint64 maxFutureSkew_
        );

        event ConfigSet(
            bytes32 previousConfigDigest,
            bytes32 configDigest,
            uint64 configCount,
            address[] members,
            uint64 f
        );
        event OwnershipTransferRequested(address indexed from, address indexed to);
        event OwnershipTransferred(address indexed from, address indexed to);

        error NotOwner(address caller);
        error NotPendingOwner(address caller);
        error FaultBoundTooHigh(uint64 f, uint256 members);
        error TooManyMembers(uint256 members, uint256 max);
        error ZeroAddressMember(uint256 index);
        error MembersNotAscending(uint256 index);
        error ConfigMismatch(bytes32 got, bytes32 want);
        error TooFewObservations(uint64 count, uint256 need);
        error TooFewSignatures(uint256 got, uint256 need);
        error StaleReport(uint64 observedAt, uint256 blockTime, uint256 maxAge);
        error FutureReport(uint64 observedAt, uint256 blockTime, uint256 maxFutureSkew);
        error BadSignatureLength(uint256 index);
        error HighS(uint256 index);
        error BadV(uint256 index);
        error InvalidSignature(uint256 index);
        error NotMember(address signer);
        error DuplicateSigner(address signer);

        function DOMAIN() external view returns (bytes32);
        function REPORT() external view returns (bytes32);
        function MAX_MEMBERS() external view returns (uint256);
        function network() external view returns (bytes32);
        function maxAge() external view returns (uint64);
        function maxFutureSkew() external view returns (uint64);
        function owner() external view returns (address);
        function pendingOwner() external view returns (address);
        function configCount() external view returns (uint64);
        function configDigest() external view returns (bytes32);
        function f() external view returns (uint64);
        function members() external view returns (address[] memory);
        function isMember(address account) external view returns (bool);
        function setConfig(address[] calldata members_, uint64 f_) external;
        function transferOwnership(address to) external;
        function acceptOwnership() external;
        function verify(bytes calldata report)
            external
            view
            returns (bytes32 pair, uint64 id, int256 median, uint64 observedAt);
    }

    /// The ABI of `contracts/PriceFeed.sol`, by hand.
    #[derive(Debug, PartialEq, Eq)]
    contract PriceFeed {
        constructor(address verifier_, bytes32 pair_, string description_);

        event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);

        error WrongPair(bytes32 got, bytes32 want);
        error NotNewer(uint64 observedAt, uint64 held);
        error NoData();
        error AnswerOutOfRange(int256 median);

        function verifier() external view returns (address);
        function pair() external view returns (bytes32);
        function update(bytes calldata report) external returns (uint80 roundId);
        function decimals() external pure returns (uint8);
        function description() external view returns (string memory);
        function version() external pure returns (uint256);
        function getRoundData(uint80 roundId_)
            external
            view
            returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
        function latestRoundData()
            external
            view
            returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
        function reportOf(uint80 roundId_) external view returns (uint64 reportId, uint64 observedAt);
    }
}

pub use PriceFeed::PriceFeedErrors as FeedError;
pub use PriceVerifier::PriceVerifierErrors as VerifierError;

/// The committed artifacts, as `scripts/compile-contract.sh` writes them.
pub const VERIFIER_ARTIFACT: &str = include_str!("../../../contracts/PriceVerifier.json");
pub const FEED_ARTIFACT: &str = include_str!("../../../contracts/PriceFeed.json");

/// The contracts' sources, which the artifacts name by their SHA-256.
pub const SOURCES: [(&str, &str); 2] = [
    (
        "PriceVerifier.sol",
        include_str!("../../../contracts/PriceVerifier.sol"),
    ),
    (
        "PriceFeed.sol",
        include_str!("../../../contracts/PriceFeed.sol"),
    ),
];

/// Freshness bounds of the deployments tests make unless they say otherwise: RedStone's (three
/// minutes old, a minute ahead).
pub const MAX_AGE: u64 = 180;
pub const MAX_FUTURE_SKEW: u64 = 60;

/// The network name of the deployments tests make unless they say otherwise (the nodes'
/// default `--network-name`).
pub const NETWORK_NAME: &str = "price-oracle";

/// The chain tests deploy on unless they say otherwise (Ethereum mainnet's id).
pub const CHAIN_ID: u64 = 1;

/// The account that deploys, so the verifiers' owner.
pub const OWNER: Address = Address::repeat_byte(0xca);

/// The account that pushes reports to feeds: no member, no owner, as any relayer may be.
pub const RELAYER: Address = Address::repeat_byte(0xee);

// ---------------------------------------------------------------------------------------------
// Committed reports, their digests computed by the crate (`price_oracle::domain`,
// `price_oracle::signed`): what the nodes sign is what the contract checks.

/// The configuration digest a verifier of `args` deployed at `verifier` on `chain_id` holds,
/// as the crate computes it.
pub fn config_of(args: &VerifierArgs, chain_id: u64, verifier: Address) -> B256 {
    config_digest(
        args.network,
        chain_id,
        verifier,
        members_digest(&args.members),
        FaultBound::new(usize::try_from(args.f).expect("f fits usize")),
    )
}

/// `member`'s observation of `price_e8` at `observed_at`, as a report's set holds it. The
/// contract sees an observation only through the set's digest, which covers no signature, so
/// the signature is left blank.
pub fn observation_of(member: Address, price_e8: i64, observed_at: u64) -> SignedObservation {
    SignedObservation {
        signer: member,
        observation: Observation {
            price: UsdPrice::from_e8(price_e8).expect("a test observation's price is a price"),
            observed_at,
        },
        signature: EthSignature::from_bytes([0; 65]),
    }
}

/// A committed report as the contracts take it. The fields are public so that tests can spoil
/// them after signing; [`CommittedReport::digest`] is always recomputed from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedReport {
    pub config: B256,
    pub pair: Pair,
    pub id: u64,
    pub median: i64,
    pub observed_at: u64,
    pub count: u64,
    pub observations: B256,
    /// Raw, so that a test can send any length.
    pub signatures: Vec<Bytes>,
}

impl CommittedReport {
    /// The report of `observations` (round `id` of `pair`, configuration `config`) as the nodes
    /// build it ([`Report`]'s value, time and observations digest); unsigned.
    pub fn commit(config: B256, pair: Pair, id: u64, observations: &[SignedObservation]) -> Self {
        Self::of(&Report {
            round: Round {
                config,
                pair,
                id,
                origin: Address::ZERO,
            },
            observations: observations.to_vec(),
            commits: Vec::new(),
        })
    }

    /// `report` as committed: its value, its time, its count and its observations' digest.
    pub fn of(report: &Report) -> Self {
        Self {
            config: report.round.config,
            pair: report.round.pair,
            id: report.round.id,
            median: report.value().map(UsdPrice::e8).unwrap_or_default(),
            observed_at: report.time().unwrap_or_default(),
            count: u64::try_from(report.observations.len()).expect("a count fits u64"),
            observations: report.observations_digest(),
            signatures: Vec::new(),
        }
    }

    /// The digest its signers sign, from the fields as they are now (the crate's
    /// `report_digest`; a median that is no price has no digest there, see
    /// [`CommittedReport::signed_over`]).
    pub fn digest(&self) -> B256 {
        let median = UsdPrice::from_e8(self.median)
            .unwrap_or_else(|err| panic!("the crate digests no median of {}: {err}", self.median));
        report_digest(
            Round {
                config: self.config,
                pair: self.pair,
                id: self.id,
                origin: Address::ZERO,
            },
            median,
            self.observed_at,
            usize::try_from(self.count).expect("a count fits usize"),
            self.observations,
        )
    }

    /// The report with each of `keys`' EIP-191 signature over its digest appended.
    pub fn signed_by(self, keys: &[&PrivateKeySigner]) -> Self {
        let digest = self.digest();
        self.signed_over(digest, keys)
    }

    /// The report with each of `keys`' EIP-191 signature over `digest` appended: for a report
    /// the crate cannot digest (a median that is no price), with the digest built by hand.
    pub fn signed_over(mut self, digest: B256, keys: &[&PrivateKeySigner]) -> Self {
        self.signatures.extend(
            keys.iter()
                .map(|key| Bytes::copy_from_slice(EthSignature::sign(key, digest).as_bytes())),
        );
        self
    }

    /// `abi.encode(config, pair, id, median, observedAt, count, observations, signatures)`.
    pub fn encode(&self) -> Vec<u8> {
        (
            self.config,
            self.pair.hash(),
            self.id,
            I256::unchecked_from(self.median),
            self.observed_at,
            self.count,
            self.observations,
            self.signatures.clone(),
        )
            .abi_encode_params()
    }
}
// ---------------------------------------------------------------------------------------------

/// An artifact's JSON.
pub fn artifact(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("an artifact is JSON")
}

/// The creation bytecode of an artifact.
fn creation_code(text: &str) -> Vec<u8> {
    let artifact = artifact(text);
    let hex = artifact["bytecode"]
        .as_str()
        .expect("the artifact has a bytecode string");
    alloy_primitives::hex::decode(hex).expect("the artifact's bytecode is hex")
}

/// What `verify` returns for a report that holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub pair: B256,
    pub id: u64,
    pub median: i64,
    pub observed_at: u64,
}

/// A round of the feed, as `latestRoundData` and `getRoundData` return it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedRound {
    pub round_id: u64,
    pub answer: i64,
    pub started_at: u64,
    pub updated_at: u64,
    pub answered_in_round: u64,
}

/// A verifier's configuration as its getters give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub digest: B256,
    pub count: u64,
    pub f: u64,
    pub members: Vec<Address>,
}

/// What a verifier is deployed with: its constructor's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierArgs {
    /// NETWORK: `keccak256` of the network name.
    pub network: B256,
    pub members: Vec<Address>,
    pub f: u64,
    pub max_age: u64,
    pub max_future_skew: u64,
}

impl VerifierArgs {
    /// `members` (sorted here, as the contract wants them) and `f`, with the tests' network name
    /// and freshness bounds.
    pub fn new(members: &[Address], f: u64) -> Self {
        let mut members = members.to_vec();
        members.sort_unstable();
        Self {
            network: keccak256(NETWORK_NAME),
            members,
            f,
            max_age: MAX_AGE,
            max_future_skew: MAX_FUTURE_SKEW,
        }
    }
}

/// Why a contract refused: the custom error's name (or its selector in hex when the error is
/// unknown, or the halt reason when the EVM halted), the decoded error, and the raw revert data.
#[derive(Clone, PartialEq, Eq)]
pub struct Revert {
    pub name: String,
    pub error: Option<Box<VerifierError>>,
    pub feed_error: Option<Box<FeedError>>,
    pub data: Bytes,
}

impl fmt::Debug for Revert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.error, &self.feed_error) {
            (Some(error), _) => write!(f, "{error:?}"),
            (None, Some(error)) => write!(f, "{error:?}"),
            (None, None) => write!(f, "{} (data {})", self.name, self.data),
        }
    }
}

impl Revert {
    fn from_data(data: Bytes) -> Self {
        let selector: Option<[u8; 4]> = data.get(..4).and_then(|bytes| bytes.try_into().ok());
        let name = selector
            .and_then(|selector| {
                VerifierError::name_by_selector(selector)
                    .or_else(|| FeedError::name_by_selector(selector))
            })
            .map(str::to_owned)
            .unwrap_or_else(|| format!("unknown revert {data}"));
        Self {
            name,
            error: VerifierError::abi_decode(&data).ok().map(Box::new),
            feed_error: FeedError::abi_decode(&data).ok().map(Box::new),
            data,
        }
    }
}

type Evm = MainnetEvm<Context<revm::context::BlockEnv, TxEnv, CfgEnv, CacheDB<EmptyDB>>>;

/// A transaction that went through: its returned data, its gas (21 000 + calldata + execution,
/// Cancun rules) and its logs.
struct Outcome {
    data: Bytes,
    gas: u64,
    logs: Vec<Log>,
}

/// An in-memory chain of a given id, whose block time the test sets, holding any number of
/// contracts.
pub struct Chain {
    evm: Evm,
    pub chain_id: u64,
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Chain({})", self.chain_id)
    }
}

impl Chain {
    /// An empty chain of `chain_id` at block time now.
    pub fn new(chain_id: u64) -> Self {
        let evm = Context::mainnet()
            .with_db(CacheDB::new(EmptyDB::default()))
            .with_cfg(
                CfgEnv::new()
                    .with_spec_and_mainnet_gas_params(SpecId::CANCUN)
                    .with_chain_id(chain_id),
            )
            .modify_cfg_chained(|cfg| cfg.disable_nonce_check = true)
            .build_mainnet();
        let mut chain = Self { evm, chain_id };
        chain.set_time(unix_now());
        chain
    }

    /// The block time of the next transactions, unix seconds.
    pub fn set_time(&mut self, unix: u64) {
        self.evm
            .ctx
            .modify_block(|block| block.timestamp = U256::from(unix));
    }

    /// The block time, unix seconds.
    pub fn time(&self) -> u64 {
        self.evm.ctx.block.timestamp.to()
    }

    /// Deploys `artifact` with `constructor_args` from [`OWNER`].
    fn deploy(&mut self, artifact: &str, constructor_args: Vec<u8>) -> Result<Address, Revert> {
        let mut code = creation_code(artifact);
        code.extend(constructor_args);
        let tx = TxEnv::builder()
            .caller(OWNER)
            .chain_id(Some(self.chain_id))
            .kind(TxKind::Create)
            .data(code.into())
            .build_fill();
        let result = self
            .evm
            .transact_commit(tx)
            .expect("the EVM runs the deployment");
        match result {
            ExecutionResult::Success {
                output: Output::Create(_, Some(address)),
                ..
            } => Ok(address),
            other => Err(revert_of(other)),
        }
    }

    /// Runs `call` to `to` as a transaction from `from`, committed when `commit`.
    fn run(
        &mut self,
        from: Address,
        to: Address,
        call: Vec<u8>,
        commit: bool,
    ) -> Result<Outcome, Revert> {
        let tx = TxEnv::builder()
            .caller(from)
            .chain_id(Some(self.chain_id))
            .kind(TxKind::Call(to))
            .data(call.into())
            .build_fill();
        let result = if commit {
            self.evm.transact_commit(tx)
        } else {
            self.evm.transact(tx).map(|outcome| outcome.result)
        }
        .expect("the EVM runs the call");
        let gas = result.tx_gas_used();
        match result {
            ExecutionResult::Success {
                output: Output::Call(data),
                logs,
                ..
            } => Ok(Outcome { data, gas, logs }),
            other => Err(revert_of(other)),
        }
    }

    /// A view call that must not revert.
    fn view<C: SolCall>(&mut self, to: Address, call: C) -> C::Return {
        let outcome = self
            .run(RELAYER, to, call.abi_encode(), false)
            .unwrap_or_else(|revert| panic!("{} reverted: {revert:?}", C::SIGNATURE));
        C::abi_decode_returns(&outcome.data).unwrap_or_else(|err| panic!("{}: {err}", C::SIGNATURE))
    }

    /// Deploys a verifier from [`OWNER`].
    pub fn deploy_verifier(&mut self, deployment: &VerifierArgs) -> Result<Address, Revert> {
        let args = PriceVerifier::constructorCall {
            network_: deployment.network,
            members_: deployment.members.clone(),
            f_: deployment.f,
            maxAge_: deployment.max_age,
            maxFutureSkew_: deployment.max_future_skew,
        }
        .abi_encode();
        self.deploy(VERIFIER_ARTIFACT, args)
    }

    /// Deploys a feed of `pair` on `verifier`.
    pub fn deploy_feed(
        &mut self,
        verifier: Address,
        pair: B256,
        description: &str,
    ) -> Result<Address, Revert> {
        let args = PriceFeed::constructorCall {
            verifier_: verifier,
            pair_: pair,
            description_: description.to_owned(),
        }
        .abi_encode();
        self.deploy(FEED_ARTIFACT, args)
    }

    /// `verify(report)` sent by [`RELAYER`]: what it returns and the transaction's gas.
    pub fn verify(&mut self, verifier: Address, report: &[u8]) -> Result<(Verified, u64), Revert> {
        let outcome = self.run(RELAYER, verifier, verify_calldata(report), false)?;
        let returned = PriceVerifier::verifyCall::abi_decode_returns(&outcome.data)
            .expect("verify returns (bytes32, uint64, int256, uint64)");
        let verified = Verified {
            pair: returned.pair,
            id: returned.id,
            median: i64::try_from(returned.median)
                .unwrap_or_else(|_| panic!("the median {} exceeds i64", returned.median)),
            observed_at: returned.observedAt,
        };
        Ok((verified, outcome.gas))
    }

    /// `setConfig(members, f)` on `verifier` from `from`: the `ConfigSet` event it emitted.
    pub fn set_config(
        &mut self,
        verifier: Address,
        from: Address,
        members: &[Address],
        f: u64,
    ) -> Result<PriceVerifier::ConfigSet, Revert> {
        let call = PriceVerifier::setConfigCall {
            members_: members.to_vec(),
            f_: f,
        };
        let outcome = self.run(from, verifier, call.abi_encode(), true)?;
        let [log] = outcome.logs.as_slice() else {
            panic!("setConfig emits one event: {:?}", outcome.logs);
        };
        assert_eq!(log.address, verifier);
        Ok(PriceVerifier::ConfigSet::decode_log(log)
            .expect("setConfig emits ConfigSet")
            .data)
    }

    /// `transferOwnership(to)` on `verifier` from `from`.
    pub fn transfer_ownership(
        &mut self,
        verifier: Address,
        from: Address,
        to: Address,
    ) -> Result<(), Revert> {
        let call = PriceVerifier::transferOwnershipCall { to };
        self.run(from, verifier, call.abi_encode(), true).map(drop)
    }

    /// `acceptOwnership()` on `verifier` from `from`.
    pub fn accept_ownership(&mut self, verifier: Address, from: Address) -> Result<(), Revert> {
        let call = PriceVerifier::acceptOwnershipCall {};
        self.run(from, verifier, call.abi_encode(), true).map(drop)
    }

    /// The verifier's current configuration.
    pub fn config(&mut self, verifier: Address) -> Config {
        Config {
            digest: self.view(verifier, PriceVerifier::configDigestCall {}),
            count: self.view(verifier, PriceVerifier::configCountCall {}),
            f: self.view(verifier, PriceVerifier::fCall {}),
            members: self.view(verifier, PriceVerifier::membersCall {}),
        }
    }

    /// The verifier's owner and pending owner.
    pub fn owners(&mut self, verifier: Address) -> (Address, Address) {
        (
            self.view(verifier, PriceVerifier::ownerCall {}),
            self.view(verifier, PriceVerifier::pendingOwnerCall {}),
        )
    }

    /// The verifier's constants and what it was deployed with: DOMAIN, REPORT, MAX_MEMBERS,
    /// network, maxAge and maxFutureSkew.
    pub fn constants(&mut self, verifier: Address) -> (B256, B256, u64, B256, u64, u64) {
        (
            self.view(verifier, PriceVerifier::DOMAINCall {}),
            self.view(verifier, PriceVerifier::REPORTCall {}),
            self.view(verifier, PriceVerifier::MAX_MEMBERSCall {}).to(),
            self.view(verifier, PriceVerifier::networkCall {}),
            self.view(verifier, PriceVerifier::maxAgeCall {}),
            self.view(verifier, PriceVerifier::maxFutureSkewCall {}),
        )
    }

    pub fn is_member(&mut self, verifier: Address, account: Address) -> bool {
        self.view(verifier, PriceVerifier::isMemberCall { account })
    }

    /// `update(report)` on `feed`, sent by [`RELAYER`]: the new round's id and the gas.
    pub fn update(&mut self, feed: Address, report: &[u8]) -> Result<(u64, u64), Revert> {
        let call = PriceFeed::updateCall {
            report: Bytes::copy_from_slice(report),
        };
        let outcome = self.run(RELAYER, feed, call.abi_encode(), true)?;
        let round = PriceFeed::updateCall::abi_decode_returns(&outcome.data)
            .expect("update returns uint80");
        Ok((round.to(), outcome.gas))
    }

    /// `latestRoundData()` of a feed.
    pub fn latest_round(&mut self, feed: Address) -> Result<FeedRound, Revert> {
        let outcome = self.run(
            RELAYER,
            feed,
            PriceFeed::latestRoundDataCall {}.abi_encode(),
            false,
        )?;
        let round = PriceFeed::latestRoundDataCall::abi_decode_returns(&outcome.data)
            .expect("latestRoundData returns five words");
        Ok(feed_round(
            round.roundId.to(),
            round.answer,
            round.startedAt,
            round.updatedAt,
            round.answeredInRound.to(),
        ))
    }

    /// `getRoundData(round)` of a feed.
    pub fn round(&mut self, feed: Address, round_id: u64) -> Result<FeedRound, Revert> {
        let call = PriceFeed::getRoundDataCall {
            roundId_: alloy_primitives::Uint::from(round_id),
        };
        let outcome = self.run(RELAYER, feed, call.abi_encode(), false)?;
        let round = PriceFeed::getRoundDataCall::abi_decode_returns(&outcome.data)
            .expect("getRoundData returns five words");
        Ok(feed_round(
            round.roundId.to(),
            round.answer,
            round.startedAt,
            round.updatedAt,
            round.answeredInRound.to(),
        ))
    }

    /// `reportOf(round)` of a feed: the report's id and its own (uncapped) time.
    pub fn report_of(&mut self, feed: Address, round_id: u64) -> Result<(u64, u64), Revert> {
        let call = PriceFeed::reportOfCall {
            roundId_: alloy_primitives::Uint::from(round_id),
        };
        let outcome = self.run(RELAYER, feed, call.abi_encode(), false)?;
        let report = PriceFeed::reportOfCall::abi_decode_returns(&outcome.data)
            .expect("reportOf returns two words");
        Ok((report.reportId, report.observedAt))
    }

    /// `verifier()`, `pair()`, `decimals()`, `description()` and `version()` of a feed.
    pub fn feed_info(&mut self, feed: Address) -> (Address, B256, u8, String, u64) {
        (
            self.view(feed, PriceFeed::verifierCall {}),
            self.view(feed, PriceFeed::pairCall {}),
            self.view(feed, PriceFeed::decimalsCall {}),
            self.view(feed, PriceFeed::descriptionCall {}),
            self.view(feed, PriceFeed::versionCall {}).to(),
        )
    }
}

fn feed_round(
    round_id: u64,
    answer: I256,
    started_at: U256,
    updated_at: U256,
    answered_in_round: u64,
) -> FeedRound {
    FeedRound {
        round_id,
        answer: i64::try_from(answer).expect("an answer fits i64"),
        started_at: started_at.to(),
        updated_at: updated_at.to(),
        answered_in_round,
    }
}

fn revert_of(result: ExecutionResult) -> Revert {
    match result {
        ExecutionResult::Revert { output, .. } => Revert::from_data(output),
        other => Revert {
            name: format!("not a revert: {other:?}"),
            error: None,
            feed_error: None,
            data: Bytes::new(),
        },
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The gas of a transaction's calldata before execution (Cancun: 21 000, 16 per non-zero byte,
/// 4 per zero byte), to tell the contract's own cost from what any transaction pays.
pub fn intrinsic_gas(calldata: &[u8]) -> u64 {
    21_000
        + calldata
            .iter()
            .map(|&byte| if byte == 0 { 4 } else { 16 })
            .sum::<u64>()
}

/// The calldata of `verify(report)`.
pub fn verify_calldata(report: &[u8]) -> Vec<u8> {
    PriceVerifier::verifyCall {
        report: Bytes::copy_from_slice(report),
    }
    .abi_encode()
}

/// Where the first verifier a fresh [`Chain`] deploys lands: [`OWNER`]'s first contract.
pub fn first_verifier_address() -> Address {
    OWNER.create(0)
}

/// The deployment of a network whose reports that first verifier on [`CHAIN_ID`] takes: nodes
/// run with it sign under the configuration digest the verifier holds.
pub fn on_chain_deployment() -> Deployment {
    Deployment {
        network: NETWORK_NAME.to_owned(),
        chain_id: CHAIN_ID,
        verifier: first_verifier_address(),
        max_faults: None,
    }
}

/// A stored row as a relayer hands it on: its committed report with the row's own commit
/// signatures, as stored.
pub fn committed_row(row: &Report) -> CommittedReport {
    let mut report = CommittedReport::of(row);
    report.signatures = row
        .commits
        .iter()
        .map(|commit| Bytes::copy_from_slice(commit.signature.as_bytes()))
        .collect();
    report
}

/// Relays stored rows, each with its own commit signatures, to a verifier of `members` and
/// `f` deployed first on a fresh chain at block time now (the network must run with
/// [`on_chain_deployment`]); asserts that each verifies and returns what each verification
/// returned with its gas.
pub fn relay_rows(rows: &[&Report], members: &[Address], f: u64) -> Vec<(Verified, u64)> {
    let deployment = VerifierArgs::new(members, f);
    let mut chain = Chain::new(CHAIN_ID);
    let verifier = chain
        .deploy_verifier(&deployment)
        .unwrap_or_else(|revert| panic!("the verifier deploys: {revert:?}"));
    assert_eq!(verifier, first_verifier_address());
    let config = chain.config(verifier).digest;
    assert_eq!(config, config_of(&deployment, CHAIN_ID, verifier));
    rows.iter()
        .map(|row| {
            let id = row.round.id;
            assert_eq!(
                row.round.config, config,
                "row {id} is not of the verifier's configuration: was its network run with \
                 on_chain_deployment()?"
            );
            assert!(
                row.commits.len() > usize::try_from(f).expect("f fits usize"),
                "row {id} carries {} commit signatures, f = {f} needs {}",
                row.commits.len(),
                f + 1
            );
            chain
                .verify(verifier, &committed_row(row).encode())
                .unwrap_or_else(|revert| panic!("row {id} does not verify on chain: {revert:?}"))
        })
        .collect()
}
