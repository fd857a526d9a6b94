//! The Node-API binding of `sendmsg-core`: converts JavaScript values at the edge, calls the core,
//! and turns its errors into Node-style errors. The TypeScript layer (`index.ts`, `lib/`) checks
//! arguments before they get here.

// napi-derive registers #[napi] items only outside test builds, so a test build (clippy
// --all-targets) sees every export as dead code.
#![cfg_attr(test, allow(dead_code))]

mod constants;
mod errors;
mod event_loop;
mod js_call;
mod outgoing;
mod reactor;
mod socket_ops;
mod sync_api;
