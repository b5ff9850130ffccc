// Compiles the contracts with the pinned solcjs (package.json) from standard JSON input and
// writes the artifacts the Rust EVM tests deploy: node compile.js <output folder>
// (PriceVerifier.json and PriceFeed.json in it). scripts/compile-contract.sh runs it; run that.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const CONTRACTS = ['PriceVerifier', 'PriceFeed'];
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  outputSelection: {
    '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] },
  },
};

const output = process.argv[2];
if (!output) {
  console.error('usage: node compile.js <output folder>');
  process.exit(2);
}

const sources = {};
for (const name of CONTRACTS) {
  sources[`${name}.sol`] = { content: fs.readFileSync(path.join(__dirname, `${name}.sol`), 'utf8') };
}
const input = { language: 'Solidity', sources, settings: SETTINGS };
// Imports are the other sources, given whole above.
const result = JSON.parse(solc.compile(JSON.stringify(input), { import: () => ({ error: 'not found' }) }));
const problems = (result.errors || []).filter((e) => e.severity === 'error' || e.severity === 'warning');
for (const problem of problems) console.error(problem.formattedMessage);
// Warnings fail the build too: the contracts are small enough to have none.
if (problems.length > 0) process.exit(1);

// An artifact names every source it was built from by its SHA-256.
const sha256 = (name) => crypto.createHash('sha256').update(sources[name].content).digest('hex');
for (const name of CONTRACTS) {
  const sourceName = `${name}.sol`;
  const contract = result.contracts[sourceName][name];
  const artifact = {
    contractName: name,
    sourceName,
    sourceSha256: Object.fromEntries(Object.keys(sources).map((source) => [source, sha256(source)])),
    solcVersion: solc.version(),
    settings: { optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion },
    abi: contract.abi,
    bytecode: '0x' + contract.evm.bytecode.object,
    deployedBytecode: '0x' + contract.evm.deployedBytecode.object,
  };
  fs.writeFileSync(path.join(output, `${name}.json`), JSON.stringify(artifact, null, 2) + '\n');
}
