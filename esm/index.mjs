// The ES module entry: the same module instance as the CommonJS entry (no dual-package hazard),
// its named exports found by Node's CommonJS export detection.
export * from '../dist/index.js'
