//! Progress of long operator commands (backup, restore, rollups rebuild, maintain, bench seeding): a bar
//! with an ETA on a terminal (indicatif), plain periodic lines when the output is a log or a pipe, so a
//! cron job's log says how far it got without filling with redraws.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often the plain mode writes a line.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

pub struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// Progress towards `total` steps (`None`: unknown, a spinner with the elapsed time).
    pub fn new(label: &str, total: Option<u64>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(n) => indicatif::ProgressBar::new(n).with_style(
                    indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({percent}%) ETA {eta}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                        .progress_chars("=> "),
                ),
                None => indicatif::ProgressBar::new_spinner().with_style(
                    indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                ),
            };
            bar.set_message(label.to_owned());
            if total.is_none() {
                bar.enable_steady_tick(Duration::from_millis(120));
            }
            bar
        });
        let now = Instant::now();
        if bar.is_none() {
            match total {
                Some(n) => eprintln!("{label}: 0/{n}"),
                None => eprintln!("{label}: started"),
            }
        }
        Self { label: label.to_owned(), total, done: 0, bar, started: now, last_line: now }
    }

    /// `n` more steps done.
    pub fn advance(&mut self, n: u64) {
        self.done += n;
        match &self.bar {
            Some(bar) => bar.inc(n),
            None if self.last_line.elapsed() >= PLAIN_EVERY => {
                self.last_line = Instant::now();
                eprintln!("{}", self.line());
            }
            None => {}
        }
    }

    /// The plain line: steps, share and the time left at the rate so far.
    fn line(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        match self.total {
            Some(total) if total > 0 && self.done > 0 => {
                let left = elapsed / self.done as f64 * total.saturating_sub(self.done) as f64;
                format!(
                    "{}: {}/{total} ({:.0}%), about {:.0} s left",
                    self.label,
                    self.done,
                    self.done as f64 * 100.0 / total as f64,
                    left
                )
            }
            _ => format!("{}: {} done, {:.0} s", self.label, self.done, elapsed),
        }
    }

    /// Done: the bar is cleared (the command prints its own summary); plain mode says how long it took.
    pub fn finish(self) {
        match self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => eprintln!("{}: done in {:.1} s", self.label, self.started.elapsed().as_secs_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_how_far_and_how_long() {
        let mut p = Progress {
            label: "backup objects".into(),
            total: Some(200),
            done: 0,
            bar: None,
            started: Instant::now() - Duration::from_secs(10),
            last_line: Instant::now(),
        };
        p.advance(50);
        let line = p.line();
        assert!(line.starts_with("backup objects: 50/200 (25%), about 30 s left"), "{line}");
        let unknown = Progress { label: "rebuild".into(), total: None, ..p };
        assert!(unknown.line().starts_with("rebuild: 50 done"));
    }
}
