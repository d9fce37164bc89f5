//! Real Redis and PostgreSQL servers for the team-gateway tests, each on a free loopback port in
//! a temp directory, stopped when dropped. When the server binary is missing a test prints
//! `SKIPPED` with the reason, unless `CI=true` (CI installs them: `.ci/run`), where it fails.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether a missing prerequisite must fail the test rather than skip it.
fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `None` (after saying SKIPPED) when `what` is missing outside CI; panics under CI.
fn missing<T>(test: &str, what: &str) -> Option<T> {
    assert!(!ci(), "{test}: {what} (CI=true: install it, see .ci/run)");
    println!("SKIPPED {test}: {what}");
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn which(name: &str, also: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(name)).chain(also.iter().map(PathBuf::from)).find(|p| p.is_file())
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` without persistence: killing it loses every key, as a crash of a cache does.
pub struct RedisServer {
    bin: PathBuf,
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start(test: &str) -> Option<RedisServer> {
        let Some(bin) = which("redis-server", &[]) else {
            return missing(test, "redis-server is not installed (Debian package redis-server)");
        };
        let dir = super::temp_dir("redis");
        let mut r = RedisServer { bin, port: free_port(), dir, child: None };
        r.restart();
        Some(r)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it at once (SIGKILL), like a crash: its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it (again) on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        wait_for_port(self.port, "redis-server");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A PostgreSQL cluster of its own. PostgreSQL refuses to run as root (as the tests and CI run
/// here): then initdb and the server run as the `postgres` user Debian's package creates, through
/// `runuser`, on a data directory that user owns.
pub struct Postgres {
    bin: PathBuf,
    pub port: u16,
    data: PathBuf,
    as_root: bool,
}

impl Postgres {
    pub fn start(test: &str) -> Option<Postgres> {
        let dirs: Vec<String> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|d| d.flatten().map(|e| e.path().join("bin/pg_ctl").display().to_string()).collect())
            .unwrap_or_default();
        let also: Vec<&str> = dirs.iter().map(String::as_str).collect();
        let Some(pg_ctl) = which("pg_ctl", &also) else {
            return missing(test, "PostgreSQL is not installed (Debian package postgresql)");
        };
        let bin = pg_ctl.parent().unwrap().to_path_buf();
        let as_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let data = super::temp_dir("postgres").join("data");
        std::fs::create_dir_all(&data).unwrap();
        if as_root {
            let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(data.parent().unwrap()).status();
            if !ok.is_ok_and(|s| s.success()) {
                return missing(test, "cannot give the data directory to the `postgres` user");
            }
        }
        let pg = Postgres { bin, port: free_port(), data, as_root };
        let init = pg.run("initdb", &["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D"], true);
        assert!(init.status.success(), "initdb failed: {}", String::from_utf8_lossy(&init.stderr));
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", pg.port, pg.data.display());
        let log = pg.data.join("server.log");
        let start =
            pg.run("pg_ctl", &["-w", "-t", "30", "-l", log.to_str().unwrap(), "-o", &opts, "start", "-D"], true);
        assert!(
            start.status.success(),
            "postgres did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        wait_for_port(pg.port, "postgres");
        Some(pg)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs one of the cluster's programs (as `postgres` when we are root); the data dir last.
    fn run(&self, program: &str, args: &[&str], data_last: bool) -> std::process::Output {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args);
        if data_last {
            cmd.arg(&self.data);
        }
        cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", &["-m", "immediate", "stop", "-D"], true);
    }
}
