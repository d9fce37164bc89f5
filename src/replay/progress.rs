//! Progress of a replay on stderr: a bar redrawn in place on a terminal (it moves turn by turn,
//! so a long conversation does not look stuck), a plain line every tenth of the work otherwise.

use std::io::Write;
use std::time::{Duration, Instant};

pub struct Progress {
    total: u64,
    done: u64,
    tty: bool,
    started: Instant,
    last_draw: Option<Instant>,
    /// Tenths of the work already reported as plain lines.
    reported: u64,
    label: String,
}

const WIDTH: u64 = 24;
const REDRAW: Duration = Duration::from_millis(80);

impl Progress {
    /// `total` turns to fold; `tty` draws a bar (stderr is a terminal), else plain lines.
    pub fn new(total: u64, tty: bool) -> Progress {
        Progress { total, done: 0, tty, started: Instant::now(), last_draw: None, reported: 0, label: String::new() }
    }

    /// The conversation now being replayed.
    pub fn start(&mut self, label: &str) {
        self.label = label.to_string();
        self.draw(true);
    }

    /// One more turn folded.
    pub fn turn(&mut self) {
        self.done += 1;
        self.draw(false);
    }

    /// The bar for `done` of `total`, e.g. `[#######.................]  29%`.
    pub fn bar(done: u64, total: u64) -> String {
        let total = total.max(1);
        let filled = (done.min(total) * WIDTH / total) as usize;
        let pct = done.min(total) * 100 / total;
        format!("[{}{}] {pct:>3}%", "#".repeat(filled), ".".repeat(WIDTH as usize - filled))
    }

    fn draw(&mut self, force: bool) {
        let now = Instant::now();
        let mut err = std::io::stderr().lock();
        if self.tty {
            if !force && self.last_draw.is_some_and(|t| now.duration_since(t) < REDRAW) && self.done < self.total {
                return;
            }
            self.last_draw = Some(now);
            let name: String = self.label.chars().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
            let _ = write!(
                err,
                "\r\x1b[K{} {}/{} turns {:.0}s {name}",
                Progress::bar(self.done, self.total),
                self.done,
                self.total,
                self.started.elapsed().as_secs_f64()
            );
            let _ = err.flush();
        } else {
            let tenth = self.done * 10 / self.total.max(1);
            if tenth > self.reported {
                self.reported = tenth;
                let _ = writeln!(
                    err,
                    "replay: {}% ({}/{} turns, {:.0} s) {}",
                    tenth * 10,
                    self.done,
                    self.total,
                    self.started.elapsed().as_secs_f64(),
                    self.label
                );
            }
        }
    }

    /// Clears the bar before the report is printed.
    pub fn finish(&mut self) {
        if self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Progress;

    #[test]
    fn bar_fills_in_proportion() {
        assert_eq!(Progress::bar(0, 10), format!("[{}]   0%", ".".repeat(24)));
        assert_eq!(Progress::bar(5, 10), format!("[{}{}]  50%", "#".repeat(12), ".".repeat(12)));
        assert_eq!(Progress::bar(12, 10), format!("[{}] 100%", "#".repeat(24)));
        assert_eq!(Progress::bar(0, 0), format!("[{}]   0%", ".".repeat(24)));
    }
}
