//! The benchmark suite: the same zero-delay mock provider reached directly, through tokenfold,
//! and through the proxies users would pick instead (LiteLLM proxy, 9Router), in one run on one
//! machine, with one markdown table of added latency, throughput, streaming time to first
//! token, failover hop, memory and start-up, ratios between them, and a verdict per target.
//!
//! ```text
//! benches/suite.sh                           # installs the peers (pinned) under target/, full run
//! cargo bench --bench suite -- --peers DIR   # full run with peers already installed in DIR
//! cargo bench --bench suite                  # direct and tokenfold only
//! cargo bench --bench suite -- --quick       # smoke run for CI: a few seconds, no peers
//! ```
//!
//! Figures go to `bench-results/suite.json` (and the table to `bench-results/suite.md`).

#[path = "suite/bodies.rs"]
mod bodies;
#[path = "suite/client.rs"]
mod client;
#[path = "suite/measure.rs"]
mod measure;
#[path = "suite/mock.rs"]
mod mock;
#[path = "suite/peers.rs"]
mod peers;
#[path = "suite/procs.rs"]
mod procs;
#[path = "suite/report.rs"]
mod report;
#[path = "suite/run.rs"]
mod run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", HELP);
        return ExitCode::SUCCESS;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let peers = args.iter().position(|a| a == "--peers").and_then(|i| args.get(i + 1)).map(PathBuf::from);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| manifest.join("target"));
    let bin = std::env::var_os("TOKENFOLD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tokenfold")));
    let settings = run::Settings {
        quick,
        bin,
        peers: peers.map(|p| if p.is_absolute() { p } else { manifest.join(p) }),
        run_dir: target.join("suite-run"),
        out_dir: manifest.join("bench-results"),
    };
    match run::run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("suite: {e}");
            ExitCode::FAILURE
        }
    }
}

const HELP: &str = "tokenfold benchmark suite: direct vs tokenfold vs LiteLLM vs 9Router against one mock.

USAGE: cargo bench --bench suite -- [--quick] [--peers DIR]

  --quick       smoke run (a few seconds): fewer samples, no peers
  --peers DIR   run the peers installed in DIR by benches/suite.sh (DIR/litellm, DIR/9router)
  TOKENFOLD_BIN=PATH   measure another tokenfold binary

Without --peers the peer columns say why they are empty. Writes bench-results/suite.json and suite.md.";
