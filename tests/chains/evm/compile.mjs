// Reproducibly compile TestUSDC.sol with solc-js (npm "solc", pinned 0.8.37; offline, soljson.js is bundled).
// Usage: node compile.mjs   -> writes TestUSDC.bin (creation bytecode hex, no 0x) and TestUSDC.abi.json
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const solc = require('solc');
const here = dirname(fileURLToPath(import.meta.url));

const input = {
  language: 'Solidity',
  sources: { 'TestUSDC.sol': { content: readFileSync(join(here, 'TestUSDC.sol'), 'utf8') } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'paris', // no PUSH0/MCOPY: runs on any post-merge EVM incl. older nodes
    metadata: { bytecodeHash: 'none' }, // no IPFS hash trailer -> bytecode stable across path/comment changes
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } },
  },
};

const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === 'error');
for (const e of out.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);

const c = out.contracts['TestUSDC.sol'].TestUSDC;
writeFileSync(join(here, 'TestUSDC.bin'), c.evm.bytecode.object + '\n');
writeFileSync(join(here, 'TestUSDC.abi.json'), JSON.stringify(c.abi, null, 2) + '\n');
console.log(`solc ${solc.version()}: TestUSDC.bin ${c.evm.bytecode.object.length / 2} bytes`);
