// Preload (NODE_OPTIONS=--require) for bcoin 1.0.2 running on leveldown 5.6.0 (the leveldown
// bcoin pins does not build on Node 20; 5.6.0 ships a prebuilt binary). bcoin's database layer
// (bdb 0.2) passes range bounds gt/gte/lt/lte = null, which leveldown 5 turns into the string
// "null", so every range scan came back empty: drop the null bounds.
'use strict';
const path = require('path');
const leveldown = require(path.join(process.env.BCOIN_DIR, 'node_modules', 'leveldown'));
const base = Object.getPrototypeOf(leveldown.prototype);
const iterator = base.iterator;
base.iterator = function (options) {
  if (options && typeof options === 'object') {
    const kept = {};
    for (const [k, v] of Object.entries(options)) {
      if (['gt', 'gte', 'lt', 'lte'].includes(k) && v == null) continue;
      kept[k] = v;
    }
    options = kept;
  }
  return iterator.call(this, options);
};
