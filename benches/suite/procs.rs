//! Child processes the suite starts (tokenfold, LiteLLM, 9Router): each in its own process
//! group, so its memory can be summed over every process it forks and it can be stopped whole.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A running child; its whole process group is stopped when this is dropped.
pub struct Spawned {
    child: Child,
    pub started: Instant,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// Lines matching the `watch` prefix given to `spawn`, as they arrive.
    pub watched: mpsc::Receiver<(String, Instant)>,
}

impl Spawned {
    /// The process group id: the child leads its own group.
    pub fn pgid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the child printed (for error messages).
    pub fn log_tail(&self) -> String {
        self.tail.lock().map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default()
    }

    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        stop_group(self.pgid(), &mut self.child);
    }
}

/// Pauses (`true`) or resumes a process group, so that its background work stays out of other
/// columns' samples.
pub fn pause_groups(pgids: &[u32], pause: bool) {
    if pgids.is_empty() {
        return;
    }
    let sig = if pause { "-STOP" } else { "-CONT" };
    let groups: Vec<String> = pgids.iter().map(|g| format!("-{g}")).collect();
    let _ = Command::new("kill").arg(sig).arg("--").args(&groups).stderr(Stdio::null()).status();
}

/// TERM to the group, KILL after 3 s; only this child's own group is signalled.
fn stop_group(pgid: u32, child: &mut Child) {
    let group = format!("-{pgid}");
    // A paused group would hold TERM until resumed.
    let _ = Command::new("kill").args(["-CONT", "--", &group]).stderr(Stdio::null()).status();
    let _ = Command::new("kill").args(["-TERM", "--", &group]).stderr(Stdio::null()).status();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) && group_pids(pgid).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
    let _ = child.wait();
}

/// Spawns `cmd` in a new process group with stdout and stderr drained into a tail buffer (and
/// appended to `log`); lines starting with `watch` are also sent to `watched`.
pub fn spawn(mut cmd: Command, log: &Path, watch: &str) -> Result<Spawned, String> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let program = format!("{:?}", cmd.get_program());
    let log_file =
        std::fs::OpenOptions::new().create(true).append(true).open(log).ok().map(|f| Arc::new(Mutex::new(f)));
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {program}: {e}"))?;
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let (tx, watched) = mpsc::channel();
    let out: Vec<Box<dyn Read + Send>> = [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    for stream in out {
        let (tail, tx, log_file, watch) = (tail.clone(), tx.clone(), log_file.clone(), watch.to_string());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if !watch.is_empty() && line.starts_with(&watch) {
                    let _ = tx.send((line.clone(), Instant::now()));
                }
                if let Some(f) = &log_file {
                    if let Ok(mut f) = f.lock() {
                        use std::io::Write;
                        let _ = writeln!(f, "{line}");
                    }
                }
                if let Ok(mut t) = tail.lock() {
                    if t.len() == 30 {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
        });
    }
    Ok(Spawned { child, started, tail, watched })
}

/// Pids of the live processes in a process group.
pub fn group_pids(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            // Fields after the command name (in parentheses, may hold spaces): state ppid pgrp ...
            let Some(close) = stat.rfind(')') else { return false };
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            fields.first() != Some(&"Z") && fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
        })
        .collect()
}

/// Resident memory summed over a process group.
#[derive(Clone, Copy, Default)]
pub struct GroupRss {
    pub rss: u64,
    /// Sum of each process's own peak (VmHWM): an upper bound of the group's peak.
    pub hwm: u64,
    pub processes: usize,
}

pub fn group_rss(pgid: u32) -> GroupRss {
    let mut out = GroupRss::default();
    for pid in group_pids(pgid) {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let kb = |name: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0)
        };
        out.rss += kb("VmRSS:") * 1024;
        out.hwm += kb("VmHWM:") * 1024;
        out.processes += 1;
    }
    out
}

/// User + system CPU a process group has used so far (USER_HZ = 100).
pub fn group_cpu(pgid: u32) -> Duration {
    let ticks: u64 = group_pids(pgid)
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let f: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Samples a group's summed RSS every 20 ms in the background and keeps the largest sum seen.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<Mutex<GroupRss>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pgid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(Mutex::new(GroupRss::default()));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let now = group_rss(pgid);
                if let Ok(mut p) = p.lock() {
                    if now.rss > p.rss {
                        *p = now;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler { stop, peak, thread: Some(thread) }
    }

    /// The peak so far: the sampled maximum of the group's sum, or the single process's own
    /// VmHWM when the group is one process (exact, where sampling might miss a short spike).
    pub fn peak(&self, pgid: u32) -> u64 {
        let sampled = self.peak.lock().map(|p| p.rss).unwrap_or(0);
        let now = group_rss(pgid);
        if now.processes == 1 {
            sampled.max(now.hwm)
        } else {
            sampled.max(now.rss)
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A free loopback port (for peers that cannot be told to pick one themselves).
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("find a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}
