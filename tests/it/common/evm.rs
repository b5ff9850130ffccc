//! The contracts in an in-memory EVM (revm, Cancun rules, as they are compiled for): deploys the
//! committed artifacts `contracts/PriceVerifier.json` and `contracts/PriceFeed.json`, calls them
//! in transactions at a block time the test sets, and decodes their custom errors.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::{SolCall, SolConstructor, SolInterface, sol};
use price_oracle::signed::V1_DOMAIN;
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
        struct Observation {
            int256 priceE8;
            uint64 observedAt;
            bytes signature;
        }

        constructor(
            bytes32 domain_,
            address[] members_,
            uint256 quorum_,
            uint256 maxAge_,
            uint256 maxFutureSkew_
        );

        error InvalidQuorum(uint256 quorum, uint256 members);
        error ZeroAddressMember(uint256 index);
        error DuplicateMember(address member);
        error BelowQuorum(uint256 got, uint256 need);
        error StaleReport(uint64 oldest, uint256 blockTime, uint256 maxAge);
        error FutureReport(uint64 newest, uint256 blockTime, uint256 maxFutureSkew);
        error BadSignatureLength(uint256 index);
        error HighS(uint256 index);
        error BadV(uint256 index);
        error InvalidSignature(uint256 index);
        error NotMember(address signer);
        error DuplicateSigner(address signer);

        function DOMAIN() external view returns (bytes32);
        function quorum() external view returns (uint256);
        function maxAge() external view returns (uint256);
        function maxFutureSkew() external view returns (uint256);
        function members() external view returns (address[] memory);
        function isMember(address account) external view returns (bool);
        function verify(bytes calldata report)
            external
            view
            returns (bytes32 pair, uint64 id, int256 median, uint64 oldest, uint64 newest);
    }

    /// The ABI of `contracts/PriceFeed.sol` beyond the verifier's, by hand.
    #[derive(Debug, PartialEq, Eq)]
    contract PriceFeed {
        constructor(
            bytes32 domain_,
            address[] members_,
            uint256 quorum_,
            uint256 maxAge_,
            uint256 maxFutureSkew_,
            bytes32 pair_,
            string description_
        );

        event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);

        error WrongPair(bytes32 got, bytes32 want);
        error NotNewer(uint64 newest, uint64 held);
        error NoData();
        error AnswerOutOfRange(int256 median);

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
        function reportIdOf(uint80 roundId_) external view returns (uint64);
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
    pub oldest: u64,
    pub newest: u64,
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

/// The account that deploys and calls; the EVM charges no gas price, so it needs no balance.
const CALLER: Address = Address::repeat_byte(0xca);

/// One deployed contract in its own in-memory chain, whose block time the test sets.
pub struct Chain {
    evm: Evm,
    pub address: Address,
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Chain({})", self.address)
    }
}

impl Chain {
    /// Deploys `artifact` with `constructor_args` at block time now.
    fn deploy(artifact: &str, constructor_args: Vec<u8>) -> Result<Self, Revert> {
        let mut evm = Context::mainnet()
            .with_db(CacheDB::new(EmptyDB::default()))
            .with_cfg(CfgEnv::new().with_spec_and_mainnet_gas_params(SpecId::CANCUN))
            .modify_cfg_chained(|cfg| cfg.disable_nonce_check = true)
            .build_mainnet();
        let mut code = creation_code(artifact);
        code.extend(constructor_args);
        let tx = TxEnv::builder()
            .caller(CALLER)
            .kind(TxKind::Create)
            .data(code.into())
            .build_fill();
        let result = evm
            .transact_commit(tx)
            .expect("the EVM runs the deployment");
        let mut chain = match result {
            ExecutionResult::Success {
                output: Output::Create(_, Some(address)),
                ..
            } => Self { evm, address },
            other => return Err(revert_of(other)),
        };
        chain.set_time(unix_now());
        Ok(chain)
    }

    /// The block time of the next calls, unix seconds.
    pub fn set_time(&mut self, unix: u64) {
        self.evm
            .ctx
            .modify_block(|block| block.timestamp = U256::from(unix));
    }

    /// Runs `call` as a transaction from the caller, committed when `commit`: the returned data
    /// and the transaction's gas (21 000 + calldata + execution, Cancun rules).
    fn run(&mut self, call: Vec<u8>, commit: bool) -> Result<(Bytes, u64), Revert> {
        let tx = TxEnv::builder()
            .caller(CALLER)
            .kind(TxKind::Call(self.address))
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
                ..
            } => Ok((data, gas)),
            other => Err(revert_of(other)),
        }
    }

    /// A view call that must not revert.
    fn view<C: SolCall>(&mut self, call: C) -> C::Return {
        let (data, _) = self
            .run(call.abi_encode(), false)
            .unwrap_or_else(|revert| panic!("{} reverted: {revert:?}", C::SIGNATURE));
        C::abi_decode_returns(&data).unwrap_or_else(|err| panic!("{}: {err}", C::SIGNATURE))
    }

    /// `verify(report)`: what it returns and the transaction's gas, or the revert.
    pub fn verify(&mut self, report: &[u8]) -> Result<(Verified, u64), Revert> {
        let (data, gas) = self.run(verify_calldata(report), false)?;
        let returned = PriceVerifier::verifyCall::abi_decode_returns(&data)
            .expect("verify returns (bytes32, uint64, int256, uint64, uint64)");
        let verified = Verified {
            pair: returned.pair,
            id: returned.id,
            median: i64::try_from(returned.median)
                .unwrap_or_else(|_| panic!("the median {} exceeds i64", returned.median)),
            oldest: returned.oldest,
            newest: returned.newest,
        };
        Ok((verified, gas))
    }

    pub fn members(&mut self) -> Vec<Address> {
        self.view(PriceVerifier::membersCall {})
    }

    pub fn quorum(&mut self) -> u64 {
        self.view(PriceVerifier::quorumCall {}).to()
    }

    pub fn freshness(&mut self) -> (u64, u64) {
        (
            self.view(PriceVerifier::maxAgeCall {}).to(),
            self.view(PriceVerifier::maxFutureSkewCall {}).to(),
        )
    }

    pub fn is_member(&mut self, account: Address) -> bool {
        self.view(PriceVerifier::isMemberCall { account })
    }

    pub fn domain(&mut self) -> B256 {
        self.view(PriceVerifier::DOMAINCall {})
    }
}

/// A deployed verifier.
pub type Verifier = Chain;

impl Verifier {
    /// Deploys a verifier of v1 reports (`keccak256("price-oracle/v1")` as its first digest
    /// word) with `members`, `quorum` and the tests' freshness bounds.
    pub fn deploy_verifier(members: &[Address], quorum: u64) -> Result<Self, Revert> {
        Self::deploy_verifier_in(V1_DOMAIN, members, quorum)
    }

    /// [`Verifier::deploy_verifier`] for the network of configuration digest `domain`.
    pub fn deploy_verifier_in(
        domain: B256,
        members: &[Address],
        quorum: u64,
    ) -> Result<Self, Revert> {
        Self::deploy_verifier_with(domain, members, quorum, MAX_AGE, MAX_FUTURE_SKEW)
    }

    pub fn deploy_verifier_with(
        domain: B256,
        members: &[Address],
        quorum: u64,
        max_age: u64,
        max_future_skew: u64,
    ) -> Result<Self, Revert> {
        let args = PriceVerifier::constructorCall {
            domain_: domain,
            members_: members.to_vec(),
            quorum_: U256::from(quorum),
            maxAge_: U256::from(max_age),
            maxFutureSkew_: U256::from(max_future_skew),
        }
        .abi_encode();
        Self::deploy(VERIFIER_ARTIFACT, args)
    }

    /// Deploys a feed of `pair` with `members`, `quorum` and the tests' freshness bounds.
    pub fn deploy_feed(
        members: &[Address],
        quorum: u64,
        pair: B256,
        description: &str,
    ) -> Result<Self, Revert> {
        let args = PriceFeed::constructorCall {
            domain_: V1_DOMAIN,
            members_: members.to_vec(),
            quorum_: U256::from(quorum),
            maxAge_: U256::from(MAX_AGE),
            maxFutureSkew_: U256::from(MAX_FUTURE_SKEW),
            pair_: pair,
            description_: description.to_owned(),
        }
        .abi_encode();
        Self::deploy(FEED_ARTIFACT, args)
    }

    /// `update(report)` on a feed: the new round's id and the transaction's gas, or the revert.
    pub fn update(&mut self, report: &[u8]) -> Result<(u64, u64), Revert> {
        let call = PriceFeed::updateCall {
            report: Bytes::copy_from_slice(report),
        };
        let (data, gas) = self.run(call.abi_encode(), true)?;
        let round =
            PriceFeed::updateCall::abi_decode_returns(&data).expect("update returns uint80");
        Ok((round.to(), gas))
    }

    /// `latestRoundData()` of a feed.
    pub fn latest_round(&mut self) -> Result<FeedRound, Revert> {
        let (data, _) = self.run(PriceFeed::latestRoundDataCall {}.abi_encode(), false)?;
        let round = PriceFeed::latestRoundDataCall::abi_decode_returns(&data)
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
    pub fn round(&mut self, round_id: u64) -> Result<FeedRound, Revert> {
        let call = PriceFeed::getRoundDataCall {
            roundId_: alloy_primitives::Uint::from(round_id),
        };
        let (data, _) = self.run(call.abi_encode(), false)?;
        let round = PriceFeed::getRoundDataCall::abi_decode_returns(&data)
            .expect("getRoundData returns five words");
        Ok(feed_round(
            round.roundId.to(),
            round.answer,
            round.startedAt,
            round.updatedAt,
            round.answeredInRound.to(),
        ))
    }

    /// `decimals()`, `description()` and `version()` of a feed.
    pub fn feed_info(&mut self) -> (u8, String, u64) {
        (
            self.view(PriceFeed::decimalsCall {}),
            self.view(PriceFeed::descriptionCall {}),
            self.view(PriceFeed::versionCall {}).to(),
        )
    }
}

fn feed_round(
    round_id: u64,
    answer: alloy_primitives::I256,
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

/// Deploys one verifier of the network of configuration `domain` with `members` and `quorum` at
/// block time now, asserts that every report verifies, and returns what each verification
/// returned with its gas.
pub fn verify_all(
    domain: B256,
    reports: &[Vec<u8>],
    members: &[Address],
    quorum: usize,
) -> Vec<(Verified, u64)> {
    let quorum = u64::try_from(quorum).expect("a quorum fits u64");
    let mut verifier = Verifier::deploy_verifier_in(domain, members, quorum)
        .unwrap_or_else(|revert| panic!("the verifier deploys: {revert:?}"));
    reports
        .iter()
        .enumerate()
        .map(|(index, report)| {
            verifier.verify(report).unwrap_or_else(|revert| {
                panic!("report {index} does not verify on chain: {revert:?}")
            })
        })
        .collect()
}
