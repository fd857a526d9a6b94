//! The Node-API binding of `sendmsg-core`: converts JavaScript values at the edge, calls the core,
//! and turns its errors into Node-style errors. The TypeScript layer (`index.ts`, `lib/`) checks
//! arguments before they get here.

mod constants;
mod errors;
mod sync_api;
