//! Keeping the agents offline and proving they tried nothing else: the whole runner (proxy, mock,
//! tap and agent) re-executes itself in a fresh network namespace that has only loopback, and each
//! agent runs under `strace`, which records every connect()/sendto()/sendmsg() address it tried.

use std::path::Path;
use std::process::{Command, Stdio};

/// Set in the re-executed runner.
pub const INSIDE_ENV: &str = "TOKENFOLD_AGENTS_NETNS";

/// How the run is isolated, said once at the top of the output.
pub enum Isolation {
    /// In a namespace of our own with only `lo`.
    Namespace,
    /// The host's network (no namespace could be made): strace alone tells what was tried.
    HostNetwork(String),
}

/// `Some(exit code)` when this process re-executed itself inside a namespace and that run ended;
/// `None` when it should run the cases itself (already inside, or no namespace available).
pub fn reexec_in_namespace(args: &[String]) -> Result<Option<i32>, String> {
    if std::env::var_os(INSIDE_ENV).is_some() {
        return Ok(None);
    }
    // Probe: a namespace with loopback up (root, or an unprivileged user namespace).
    let probe = Command::new("unshare")
        .args(["--net", "--map-root-user", "--", "ip", "link", "set", "lo", "up"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => return Err(format!("unshare --net failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => return Err(format!("unshare is not available: {e}")),
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let script = "ip link set lo up && exec \"$0\" \"$@\"";
    let status = Command::new("unshare")
        .args(["--net", "--map-root-user", "--", "sh", "-c", script])
        .arg(exe)
        .args(args)
        .env(INSIDE_ENV, "1")
        .status()
        .map_err(|e| e.to_string())?;
    Ok(Some(status.code().unwrap_or(1)))
}

/// Network interfaces of this process's namespace (in a fresh one: only `lo`). /proc/self/net
/// follows the reader's namespace; /sys/class/net would show the host's.
pub fn interfaces() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default();
    let mut v: Vec<String> =
        text.lines().skip(2).filter_map(|l| l.split(':').next()).map(|s| s.trim().to_string()).collect();
    v.sort();
    v
}

pub fn isolation() -> Isolation {
    if std::env::var_os(INSIDE_ENV).is_some() && interfaces() == ["lo"] {
        Isolation::Namespace
    } else {
        Isolation::HostNetwork(format!("interfaces {:?}", interfaces()))
    }
}

/// The strace binary, if it can trace here.
pub fn strace() -> Result<String, String> {
    let bin = std::env::var("STRACE").unwrap_or_else(|_| "strace".into());
    let out = Command::new(&bin)
        .args(["-f", "--seccomp-bpf", "-qq", "-e", "trace=connect", "-o", "/dev/null", "--", "true"])
        .output()
        .map_err(|e| format!("{bin} is not installed ({e}); apt-get install strace"))?;
    if out.status.success() {
        Ok(bin)
    } else {
        Err(format!("{bin} cannot trace here: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The arguments that put `strace` in front of a command, writing to `log`.
pub fn strace_prefix(strace: &str, log: &Path) -> Vec<String> {
    [strace, "-f", "--seccomp-bpf", "-qq", "-e", "signal=none", "-e", "trace=connect,sendto,sendmsg,sendmmsg", "-o"]
        .iter()
        .map(|s| s.to_string())
        .chain([log.display().to_string(), "--".to_string()])
        .collect()
}

/// Every IPv4/IPv6 address in the trace that is not loopback, with the line that tried it.
pub fn non_loopback_attempts(trace: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in trace.lines() {
        for addr in addresses(line) {
            if !is_loopback(&addr) {
                out.push(format!("{addr}: {}", line.chars().take(240).collect::<String>()));
            }
        }
    }
    out
}

/// Count of traced calls that named an inet address (loopback ones included).
pub fn inet_calls(trace: &str) -> usize {
    trace.lines().filter(|l| !addresses(l).is_empty()).count()
}

fn addresses(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (marker, end) in [("inet_addr(\"", '"'), ("inet_pton(AF_INET6, \"", '"')] {
        let mut rest = line;
        while let Some(i) = rest.find(marker) {
            rest = &rest[i + marker.len()..];
            if let Some(j) = rest.find(end) {
                out.push(rest[..j].to_string());
                rest = &rest[j..];
            }
        }
    }
    out
}

fn is_loopback(addr: &str) -> bool {
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => a.is_loopback(),
        Ok(std::net::IpAddr::V6(a)) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        Err(_) => false,
    }
}

/// Self-checks of the trace parser, run before the cases (a broken parser would pass anything).
pub fn self_check() -> Result<(), String> {
    let trace = concat!(
        "12 connect(20, {sa_family=AF_INET, sin_port=htons(8411), sin_addr=inet_addr(\"127.0.0.1\")}, 16) = 0\n",
        "12 connect(7, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr(\"10.255.255.53\")}, 16) = -1\n",
        "13 connect(9, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), ",
        "inet_pton(AF_INET6, \"2606:4700::6810:1\", &sin6_addr), sin6_scope_id=0}, 28) = -1\n",
        "13 connect(9, {sa_family=AF_INET6, sin6_port=htons(80), inet_pton(AF_INET6, \"::1\", &sin6_addr)}, 28) = 0\n",
        "14 connect(3, {sa_family=AF_UNIX, sun_path=\"/run/x\"}, 110) = 0\n",
    );
    let found = non_loopback_attempts(trace);
    let ok = found.len() == 2
        && found[0].starts_with("10.255.255.53:")
        && found[1].starts_with("2606:4700::6810:1:")
        && inet_calls(trace) == 4;
    ok.then_some(()).ok_or_else(|| format!("the strace parser is broken: {found:?}"))
}
