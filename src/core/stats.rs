//! `/mailbox/stats` arithmetic, as upstream defines it.

use serde::{Deserialize, Serialize};

/// The counters reported for a mailbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests received: answered plus still pending.
    pub incoming: u64,
    /// Requests this entity sent.
    pub outgoing: u64,
    /// Requests this entity has answered.
    pub completed: u64,
    /// Requests taken from the queue but not yet answered.
    pub in_progress: u64,
    /// Messages waiting in the queue.
    pub queued: u64,
}

impl Stats {
    /// `pending` is the number of requests in flight at this mailbox (queued or taken,
    /// not yet answered).
    pub fn compute(queued: u64, pending: u64, completed: u64, outgoing: u64) -> Self {
        Self {
            incoming: completed + pending,
            outgoing,
            completed,
            in_progress: pending.saturating_sub(queued),
            queued,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_still_queued_are_not_in_progress() {
        let stats = Stats::compute(2, 2, 0, 0);
        assert_eq!((stats.incoming, stats.in_progress, stats.queued), (2, 0, 2));
    }

    #[test]
    fn taken_requests_are_in_progress_until_answered() {
        let stats = Stats::compute(1, 2, 3, 4);
        assert_eq!(
            stats,
            Stats {
                incoming: 5,
                outgoing: 4,
                completed: 3,
                in_progress: 1,
                queued: 1
            }
        );
    }

    #[test]
    fn queued_responses_do_not_make_in_progress_negative() {
        assert_eq!(Stats::compute(5, 1, 0, 0).in_progress, 0);
    }
}
