//! The verifier contract in an in-memory EVM (revm, Cancun rules, as the contract is compiled
//! for): deploys the committed artifact `contracts/PriceVerifier.json` with a member list and a
//! quorum, calls `verify` in a transaction, and decodes the contract's custom errors.

use std::fmt;

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::{SolCall, SolConstructor, SolInterface, sol};
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
        constructor(address[] members_, uint256 quorum_);

        error InvalidQuorum(uint256 quorum, uint256 members);
        error ZeroAddressMember(uint256 index);
        error DuplicateMember(address member);
        error BadSignatureLength(uint256 index);
        error HighS(uint256 index);
        error BadV(uint256 index);
        error InvalidSignature(uint256 index);
        error NotMember(address signer);
        error DuplicateSigner(address signer);
        error BelowQuorum(uint256 got, uint256 need);

        function DOMAIN() external view returns (bytes32);
        function quorum() external view returns (uint256);
        function members() external view returns (address[] memory);
        function isMember(address account) external view returns (bool);
        function verify(bytes calldata report)
            external
            view
            returns (bytes32 pair, int256 priceE8, uint64 observedAt, uint64 id);
    }
}

pub use PriceVerifier::PriceVerifierErrors as VerifierError;

/// The committed artifact, as `scripts/compile-contract.sh` writes it.
pub const ARTIFACT: &str = include_str!("../../contracts/PriceVerifier.json");

/// The contract's source, which the artifact names by its SHA-256.
pub const SOURCE: &str = include_str!("../../contracts/PriceVerifier.sol");

/// The artifact's JSON.
pub fn artifact() -> serde_json::Value {
    serde_json::from_str(ARTIFACT).expect("contracts/PriceVerifier.json is JSON")
}

/// The creation bytecode of the artifact.
pub fn creation_code() -> Vec<u8> {
    let artifact = artifact();
    let hex = artifact["bytecode"]
        .as_str()
        .expect("the artifact has a bytecode string");
    alloy_primitives::hex::decode(hex).expect("the artifact's bytecode is hex")
}

/// The fields `verify` returns for a report that holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub pair: B256,
    pub price_e8: i64,
    pub observed_at: u64,
    pub id: u64,
}

/// Why the contract refused: the custom error's name (or its selector in hex when the error is
/// unknown, or the halt reason when the EVM halted), the decoded error, and the raw revert data.
#[derive(Clone, PartialEq, Eq)]
pub struct Revert {
    pub name: String,
    pub error: Option<Box<VerifierError>>,
    pub data: Bytes,
}

impl fmt::Debug for Revert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            Some(error) => write!(f, "{error:?}"),
            None => write!(f, "{} (data {})", self.name, self.data),
        }
    }
}

impl Revert {
    fn from_data(data: Bytes) -> Self {
        let name = data
            .get(..4)
            .and_then(|selector| {
                VerifierError::name_by_selector(selector.try_into().expect("4 bytes"))
            })
            .map(str::to_owned)
            .unwrap_or_else(|| format!("unknown revert {data}"));
        Self {
            name,
            error: VerifierError::abi_decode(&data).ok().map(Box::new),
            data,
        }
    }
}

type Evm = MainnetEvm<Context<revm::context::BlockEnv, TxEnv, CfgEnv, CacheDB<EmptyDB>>>;

/// The account that deploys and calls; the EVM charges no gas price, so it needs no balance.
const CALLER: Address = Address::repeat_byte(0xca);

/// A deployed verifier in its own in-memory chain.
pub struct Verifier {
    evm: Evm,
    pub address: Address,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({})", self.address)
    }
}

impl Verifier {
    /// Deploys the artifact with `members` and `quorum`; the constructor's revert otherwise.
    pub fn deploy(members: &[Address], quorum: u64) -> Result<Self, Revert> {
        let mut evm = Context::mainnet()
            .with_db(CacheDB::new(EmptyDB::default()))
            .with_cfg(CfgEnv::new().with_spec_and_mainnet_gas_params(SpecId::CANCUN))
            .modify_cfg_chained(|cfg| cfg.disable_nonce_check = true)
            .build_mainnet();
        let mut code = creation_code();
        code.extend(
            PriceVerifier::constructorCall {
                members_: members.to_vec(),
                quorum_: U256::from(quorum),
            }
            .abi_encode(),
        );
        let tx = TxEnv::builder()
            .caller(CALLER)
            .kind(TxKind::Create)
            .data(code.into())
            .build_fill();
        let result = evm
            .transact_commit(tx)
            .expect("the EVM runs the deployment");
        match result {
            ExecutionResult::Success {
                output: Output::Create(_, Some(address)),
                ..
            } => Ok(Self { evm, address }),
            other => Err(revert_of(other)),
        }
    }

    /// Runs `call` as a transaction from the caller without committing it: the returned data and
    /// the transaction's gas (21 000 + calldata + execution, Cancun rules).
    fn call(&mut self, call: Vec<u8>) -> Result<(Bytes, u64), Revert> {
        let tx = TxEnv::builder()
            .caller(CALLER)
            .kind(TxKind::Call(self.address))
            .data(call.into())
            .build_fill();
        let result = self.evm.transact(tx).expect("the EVM runs the call").result;
        let gas = result.tx_gas_used();
        match result {
            ExecutionResult::Success {
                output: Output::Call(data),
                ..
            } => Ok((data, gas)),
            other => Err(revert_of(other)),
        }
    }

    /// `verify(report)`: the returned fields and the transaction's gas, or the revert.
    pub fn verify(&mut self, report: &[u8]) -> Result<(Verified, u64), Revert> {
        let call = PriceVerifier::verifyCall {
            report: Bytes::copy_from_slice(report),
        };
        let (data, gas) = self.call(call.abi_encode())?;
        let returned = PriceVerifier::verifyCall::abi_decode_returns(&data)
            .expect("verify returns (bytes32, int256, uint64, uint64)");
        let verified = Verified {
            pair: returned.pair,
            price_e8: i64::try_from(returned.priceE8)
                .unwrap_or_else(|_| panic!("price_e8 {} exceeds i64", returned.priceE8)),
            observed_at: returned.observedAt,
            id: returned.id,
        };
        Ok((verified, gas))
    }

    /// `members()`.
    pub fn members(&mut self) -> Vec<Address> {
        let (data, _) = self
            .call(PriceVerifier::membersCall {}.abi_encode())
            .expect("members() does not revert");
        PriceVerifier::membersCall::abi_decode_returns(&data).expect("members() returns address[]")
    }

    /// `quorum()`.
    pub fn quorum(&mut self) -> u64 {
        let (data, _) = self
            .call(PriceVerifier::quorumCall {}.abi_encode())
            .expect("quorum() does not revert");
        let quorum =
            PriceVerifier::quorumCall::abi_decode_returns(&data).expect("quorum() returns uint256");
        quorum.to()
    }

    /// `isMember(account)`.
    pub fn is_member(&mut self, account: Address) -> bool {
        let (data, _) = self
            .call(PriceVerifier::isMemberCall { account }.abi_encode())
            .expect("isMember() does not revert");
        PriceVerifier::isMemberCall::abi_decode_returns(&data).expect("isMember() returns bool")
    }

    /// `DOMAIN()`.
    pub fn domain(&mut self) -> B256 {
        let (data, _) = self
            .call(PriceVerifier::DOMAINCall {}.abi_encode())
            .expect("DOMAIN() does not revert");
        PriceVerifier::DOMAINCall::abi_decode_returns(&data).expect("DOMAIN() returns bytes32")
    }
}

fn revert_of(result: ExecutionResult) -> Revert {
    match result {
        ExecutionResult::Revert { output, .. } => Revert::from_data(output),
        ExecutionResult::Halt { reason, .. } => Revert {
            name: format!("halt: {reason:?}"),
            error: None,
            data: Bytes::new(),
        },
        ExecutionResult::Success { output, .. } => Revert {
            name: format!("unexpected success: {output:?}"),
            error: None,
            data: Bytes::new(),
        },
    }
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

/// Deploys one verifier with `members` and `quorum`, asserts that every report verifies, and
/// returns each verification's transaction gas.
pub fn verify_all(reports: &[Vec<u8>], members: &[Address], quorum: usize) -> Vec<u64> {
    let quorum = u64::try_from(quorum).expect("a quorum fits u64");
    let mut verifier = Verifier::deploy(members, quorum)
        .unwrap_or_else(|revert| panic!("the verifier deploys: {revert:?}"));
    reports
        .iter()
        .enumerate()
        .map(|(index, report)| match verifier.verify(report) {
            Ok((_, gas)) => gas,
            Err(revert) => panic!("report {index} does not verify on chain: {revert:?}"),
        })
        .collect()
}
