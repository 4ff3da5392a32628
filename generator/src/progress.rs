//! The live progress line on a terminal: requests per second, errors, p99 and time left,
//! redrawn four times a second on standard error; nothing when standard error is not a terminal
//! (unless asked).

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::load::Engine;

/// When to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum When {
    /// Only when standard error is a terminal.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// A running progress line.
#[derive(Debug)]
pub(crate) struct Progress {
    task: Option<(
        tokio::task::JoinHandle<()>,
        tokio::sync::oneshot::Sender<()>,
    )>,
}

impl Progress {
    /// Stops drawing and ends the line.
    pub(crate) async fn finish(self) {
        if let Some((task, stop)) = self.task {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}

fn line(engine: &Engine, last: &mut (u64, Duration), duration: Option<Duration>) -> String {
    let now = engine.started.elapsed();
    let settled = engine.settled.load(Ordering::Relaxed);
    let errors = engine.errors.load(Ordering::Relaxed);
    let dt = (now - last.1).as_secs_f64().max(1e-3);
    let rps = (settled - last.0) as f64 / dt;
    *last = (settled, now);
    let p99 = {
        let stats = engine.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats
            .timeline
            .last()
            .map(|b| b.latency.value_at_quantile(0.99) as f64 / 1000.0)
            .unwrap_or(0.0)
    };
    let left = duration
        .map(|d| format!("{:.0}s left", d.saturating_sub(now).as_secs_f64()))
        .unwrap_or_default();
    format!(
        "replay {:>6.1}s  {settled:>9} requests  {rps:>9.0} rps  {errors:>6} errors  p99 {p99:>8.2} ms  {left}",
        now.as_secs_f64()
    )
}

/// Starts drawing when `when` says so.
pub(crate) fn start(when: When, engine: Arc<Engine>, duration: Option<Duration>) -> Progress {
    let draw = match when {
        When::Auto => std::io::stderr().is_terminal(),
        When::Always => true,
        When::Never => false,
    };
    if !draw {
        return Progress { task: None };
    }
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut last = (0, Duration::ZERO);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let text = line(&engine, &mut last, duration);
                    let _ = write!(std::io::stderr(), "\r{text}\x1b[K");
                }
                _ = &mut stopped => break,
            }
        }
        let _ = writeln!(std::io::stderr());
    });
    Progress {
        task: Some((task, stop)),
    }
}
