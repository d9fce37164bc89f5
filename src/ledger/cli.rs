//! `tokenfold report`: reads the ledger and prints a table, JSON or CSV.

use std::path::PathBuf;
use std::process::ExitCode;

use super::report::{self, GroupBy};
use super::sessions::{self, Pick};

pub struct ReportArgs {
    pub since: String,
    pub by: String,
    /// `None`: no `--session`; `Some(None)`: `--session` without an id (list conversations);
    /// `Some(Some(p))`: the conversation whose id is or starts with `p`.
    pub session: Option<Option<String>>,
    pub json: bool,
    pub csv: bool,
    pub ledger: Option<PathBuf>,
}

/// Conversations listed when `--session` does not name exactly one.
const SESSIONS_LISTED: usize = 20;

pub fn report(a: ReportArgs) -> ExitCode {
    let Some(since_ms) = report::parse_since(&a.since, super::now_ms()) else {
        eprintln!("error: --since `{}` is not like 24h, 7d, 30d or 2026-11-01", a.since);
        return ExitCode::from(2);
    };
    let Some(group) = GroupBy::parse(&a.by) else {
        eprintln!("error: --by `{}` is not one of {}", a.by, GroupBy::NAMES);
        return ExitCode::from(2);
    };
    let Some(path) = a.ledger.clone().or_else(super::path_from_env) else {
        eprintln!("error: the ledger is off (TOKENFOLD_LEDGER=off); pass --ledger PATH");
        return ExitCode::from(2);
    };
    if let Some(url) = path.to_str().filter(|p| p.starts_with("postgres://") || p.starts_with("postgresql://")) {
        return report_team(url, since_ms, a);
    }
    if !path.exists() {
        eprintln!("no ledger yet at {}: run `tokenfold serve` and send some requests first", path.display());
        return ExitCode::from(1);
    }
    let fail = |e: rusqlite::Error| {
        eprintln!("error: cannot read the ledger at {}: {e}", path.display());
        ExitCode::FAILURE
    };
    let session = match &a.session {
        None => None,
        Some(prefix) => {
            let prefix = prefix.as_deref().unwrap_or("");
            let picked = if prefix.is_empty() {
                sessions::list(&path, since_ms, "", SESSIONS_LISTED).map(Pick::Several)
            } else {
                sessions::pick(&path, since_ms, prefix, SESSIONS_LISTED)
            };
            match picked {
                Ok(Pick::One(id)) => Some(id),
                Ok(Pick::Several(rows)) => {
                    if !prefix.is_empty() {
                        eprintln!("{} conversations start with `{prefix}`; give more of the id:", rows.len());
                    }
                    return print_sessions(&rows, &a);
                }
                Ok(Pick::Nothing(rows)) => {
                    eprintln!("no conversation id starts with `{prefix}` since --since {}; recent ones:", a.since);
                    print_sessions(&rows, &a);
                    return ExitCode::from(1);
                }
                Err(e) => return fail(e),
            }
        }
    };
    let rep = match report::build(&path, since_ms, group, session.as_deref()) {
        Ok(rep) => rep,
        Err(e) => return fail(e),
    };
    if a.json {
        return print_json(&rep);
    }
    if a.csv {
        print!("{}", report::render_csv(&rep));
        return ExitCode::SUCCESS;
    }
    if let Some(id) = &session {
        println!("conversation {id}");
    }
    print!("{}", report::render_table(&rep));
    println!("(tokens: provider-reported input plus tokenfold's estimate of what folding removed;");
    println!(" saved $: billed cost against sending the unfolded request, cache reads and writes priced;");
    println!(" cache saved $: billed cost against the same tokens with no prompt cache)");
    print!("{}", super::render::expiry_line(&rep.cache_expiry));
    ExitCode::SUCCESS
}

/// A team's ledger in PostgreSQL: its records since `since_ms` are copied into a private
/// temporary SQLite file, which the same report then reads.
fn report_team(url: &str, since_ms: i64, a: ReportArgs) -> ExitCode {
    let dir = std::env::temp_dir().join(format!("tokenfold-report-{}", std::process::id()));
    if let Err(e) = crate::files::private_dir(&dir) {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let copy = dir.join("ledger.db");
    let code = match super::postgres::copy_into_sqlite(url, since_ms, &copy) {
        Ok(_) => report(ReportArgs { ledger: Some(copy), ..a }),
        Err(e) => {
            eprintln!("error: cannot read the ledger in PostgreSQL: {e}");
            ExitCode::FAILURE
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    code
}

fn print_sessions(rows: &[sessions::SessionRow], a: &ReportArgs) -> ExitCode {
    if a.json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!("no conversations recorded since --since {}", a.since);
    } else {
        print!("{}", super::render::sessions_table(rows));
        println!("(`tokenfold report --session ID` shows one; a unique prefix of the id is enough)");
    }
    ExitCode::SUCCESS
}

fn print_json<T: serde::Serialize>(v: &T) -> ExitCode {
    match serde_json::to_string_pretty(v) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
