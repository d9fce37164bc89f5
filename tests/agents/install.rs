//! The real clients from the npm registry at the versions pinned in tests/agents/npm (exact
//! versions in package.json; the lockfile adds integrity hashes), installed into target/ and reused
//! while the pins are unchanged. Runs before the runner enters its offline namespace.
//!
//! `npm install`, not `npm ci`: the lockfile lacks the platform packages the registry does not
//! have (OpenCode lists builds for every OS as optional dependencies), which `npm ci` rejects.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PINS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/agents/npm");
const INSTALL_LIMIT: Duration = Duration::from_secs(900);

/// Where the clients live: target/agents-npm.
pub fn prefix() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap_or(Path::new(".")).join("agents-npm")
}

/// The pinned version of `package` (from package.json).
pub fn pinned(package: &str) -> Option<String> {
    let text = std::fs::read_to_string(Path::new(PINS).join("package.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["dependencies"][package].as_str().map(str::to_string)
}

/// Installs the pinned clients unless the same lockfile is already installed. `Err` says why the
/// install failed (the cases then say SKIPPED with this reason).
pub fn ensure() -> Result<(), String> {
    let dir = prefix();
    let lock = std::fs::read(Path::new(PINS).join("package-lock.json")).map_err(|e| format!("lockfile: {e}"))?;
    let stamp = dir.join("installed-lock.json");
    if std::fs::read(&stamp).ok().as_deref() == Some(&lock[..]) && dir.join("node_modules/.bin").is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for f in ["package.json", "package-lock.json"] {
        std::fs::copy(Path::new(PINS).join(f), dir.join(f)).map_err(|e| format!("{f}: {e}"))?;
    }
    let _ = std::fs::remove_file(&stamp);
    println!("agents: installing the pinned clients with npm into {} (once per lockfile)", dir.display());
    let log_path = dir.join("npm-install.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefer-offline", "--fetch-retries=1", "--fetch-timeout=60000"])
        // A registry that is down fails in seconds, not minutes of back-off.
        .args(["--fetch-retry-mintimeout=2000", "--fetch-retry-maxtimeout=10000"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("npm is not installed ({e})"))?;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if started.elapsed() > INSTALL_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("npm install did not finish in {} s", INSTALL_LIMIT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        // npm's first error lines say what went wrong (code, then the failed request).
        let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("npm error")).take(4).collect();
        return Err(format!("npm install failed ({status}): {} (log: {})", errors.join(" | "), log_path.display()));
    }
    std::fs::write(&stamp, &lock).map_err(|e| e.to_string())?;
    println!("agents: installed in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The installed client's executable, checked by running `ARGS --version` and finding the pinned
/// version in its output.
pub fn client(bin: &str, package: &str) -> Result<PathBuf, String> {
    let path = prefix().join("node_modules/.bin").join(bin);
    if !path.exists() {
        return Err(format!("{package} is not installed ({} is missing)", path.display()));
    }
    let want = pinned(package).ok_or_else(|| format!("{package} is not pinned in tests/agents/npm/package.json"))?;
    let out = Command::new(&path)
        .arg("--version")
        .env("HOME", prefix().join("version-home"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{} does not run: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains(&want) {
        return Err(format!(
            "{package}: `{bin} --version` said {:?} (exit {:?}), expected {want}",
            text.trim(),
            out.status.code()
        ));
    }
    Ok(path)
}
