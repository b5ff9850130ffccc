// Compiles PriceVerifier.sol with the pinned solcjs (package.json) from standard JSON input and
// writes the artifact the Rust EVM tests deploy: node compile.js <output.json>
// scripts/compile-contract.sh runs it; run that instead.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const SOURCE_NAME = 'PriceVerifier.sol';
const CONTRACT = 'PriceVerifier';
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  outputSelection: { [SOURCE_NAME]: { [CONTRACT]: ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
};

const output = process.argv[2];
if (!output) {
  console.error('usage: node compile.js <output.json>');
  process.exit(2);
}

const source = fs.readFileSync(path.join(__dirname, SOURCE_NAME));
const input = {
  language: 'Solidity',
  sources: { [SOURCE_NAME]: { content: source.toString('utf8') } },
  settings: SETTINGS,
};
const result = JSON.parse(solc.compile(JSON.stringify(input)));
const problems = (result.errors || []).filter((e) => e.severity === 'error' || e.severity === 'warning');
for (const problem of problems) console.error(problem.formattedMessage);
if (problems.some((e) => e.severity === 'error')) process.exit(1);
// Warnings fail the build too: the contract is small enough to have none.
if (problems.length > 0) process.exit(1);

const contract = result.contracts[SOURCE_NAME][CONTRACT];
const artifact = {
  contractName: CONTRACT,
  sourceName: SOURCE_NAME,
  sourceSha256: crypto.createHash('sha256').update(source).digest('hex'),
  solcVersion: solc.version(),
  settings: { optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion },
  abi: contract.abi,
  bytecode: '0x' + contract.evm.bytecode.object,
  deployedBytecode: '0x' + contract.evm.deployedBytecode.object,
};
fs.writeFileSync(output, JSON.stringify(artifact, null, 2) + '\n');
