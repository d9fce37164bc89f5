//! tokenfold: a proxy for coding agents that folds repeated context, routes across providers and
//! accounts for what it saved. See DESIGN.md for the invariants.
#![forbid(unsafe_code)]

pub mod cache;
pub mod config;
pub mod dialect;
pub mod files;
pub mod fold;
pub mod ledger;
pub mod pool;
pub mod price;
pub mod replay;
pub mod server;
pub mod shared;
pub mod table;
pub mod tokens;
