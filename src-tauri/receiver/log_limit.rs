//! A fixed-window limit on repeated log lines, so a flood of bad requests cannot flood
//! the log. Suppressed lines are counted and reported when the next window opens.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LogLimit {
    max_per_window: u32,
    window: Duration,
    state: Mutex<State>,
}

struct State {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

/// Whether to log this line, and how many were suppressed before it.
pub enum Permit {
    Log { suppressed_before: u64 },
    Suppress,
}

impl LogLimit {
    pub fn new(max_per_window: u32, window: Duration) -> Self {
        Self {
            max_per_window,
            window,
            state: Mutex::new(State {
                started: Instant::now(),
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    pub fn check(&self) -> Permit {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut suppressed_before = 0;
        if state.started.elapsed() >= self.window {
            suppressed_before = state.suppressed;
            state.started = Instant::now();
            state.logged = 0;
            state.suppressed = 0;
        }
        if state.logged < self.max_per_window {
            state.logged += 1;
            Permit::Log { suppressed_before }
        } else {
            state.suppressed += 1;
            Permit::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_limit_are_counted() {
        let limit = LogLimit::new(2, Duration::from_millis(0));
        // A zero-length window opens a new one on every check.
        assert!(matches!(
            limit.check(),
            Permit::Log {
                suppressed_before: 0
            }
        ));

        let limit = LogLimit::new(2, Duration::from_secs(3600));
        assert!(matches!(limit.check(), Permit::Log { .. }));
        assert!(matches!(limit.check(), Permit::Log { .. }));
        assert!(matches!(limit.check(), Permit::Suppress));
        assert_eq!(limit.state.lock().unwrap().suppressed, 1);
    }
}
