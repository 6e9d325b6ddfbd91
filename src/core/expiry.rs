//! When a mailbox's queue and the mailbox itself expire, as academy's Redis
//! backend has it: a queue nobody has read for `MESSAGE_EXPIRY_S` (counted from
//! the oldest unread message's arrival, renewed by each read) is dropped; a
//! mailbox nobody has used for `GRAVESTONE_EXPIRY_S` is removed.
//!
//! Uses and reads are stored lazily, so that expiry adds no row write to a
//! message's path: a stamp is rewritten only once it is older than its slack (1%
//! of the expiry, at most a day). A stored stamp is thus at most one slack older
//! than the truth, and every due time adds that slack: nothing expires early,
//! and nothing more than one slack late.

use crate::store::MailboxRecord;

/// The longest a stored stamp may lag behind the truth.
const MAX_SLACK_S: f64 = 24.0 * 3600.0;

/// How long after the last try a follow-up that failed is tried again.
pub const FOLLOW_UP_RETRY_S: f64 = 10.0;

/// The expiry settings (from [`crate::protocol::config::Config`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expiry {
    pub message_expiry_s: f64,
    pub gravestone_expiry_s: f64,
}

impl Expiry {
    /// How stale `used_at` may grow before a use rewrites it.
    pub fn use_slack(&self) -> f64 {
        (self.gravestone_expiry_s / 100.0).min(MAX_SLACK_S)
    }

    /// How stale `read_at` may grow before a read rewrites it.
    pub fn read_slack(&self) -> f64 {
        (self.message_expiry_s / 100.0).min(MAX_SLACK_S)
    }

    /// When the mailbox is removed if nobody uses it before.
    pub fn removal_due(&self, record: &MailboxRecord) -> f64 {
        last_use(record) + self.use_slack() + self.gravestone_expiry_s
    }

    /// When the queue is dropped if nobody reads it before; `None` while
    /// nothing is unread.
    pub fn queue_due(&self, record: &MailboxRecord, oldest_unread_at: Option<f64>) -> Option<f64> {
        let oldest = oldest_unread_at?;
        let read = last_read(record) + self.read_slack();
        Some(oldest.max(read) + self.message_expiry_s)
    }

    /// The earliest a message arriving `now` can make its queue due: the alarm
    /// must ring by then (a later read only moves the due time out).
    pub fn queue_due_for_arrival(&self, now: f64) -> f64 {
        now + self.message_expiry_s
    }
}

/// When the mailbox was last used, as far as its record tells.
fn last_use(record: &MailboxRecord) -> f64 {
    let stamps = [record.used_at, record.heartbeat_at, record.terminated_at];
    stamps
        .into_iter()
        .flatten()
        .fold(record.created_at, f64::max)
}

/// When the queue was last read, as far as the record tells: a mailbox never
/// read counts as read when created (so a read soon after creation, like any
/// read within the slack of the stored one, writes nothing).
fn last_read(record: &MailboxRecord) -> f64 {
    record.read_at.unwrap_or(record.created_at)
}

/// Records a use at `now`; `true` if the record changed and must be saved.
pub fn note_use(expiry: &Expiry, record: &mut MailboxRecord, now: f64) -> bool {
    let stored = last_use(record);
    stamp(&mut record.used_at, stored, now, expiry.use_slack())
}

/// Records a read at `now`; `true` if the record changed and must be saved.
pub fn note_read(expiry: &Expiry, record: &mut MailboxRecord, now: f64) -> bool {
    let stored = last_read(record);
    stamp(&mut record.read_at, stored, now, expiry.read_slack())
}

/// Sets `field` to `now` unless the stamp it stands for, `stored`, is within
/// `slack` of it.
fn stamp(field: &mut Option<f64>, stored: f64, now: f64, slack: f64) -> bool {
    if now - stored <= slack {
        return false;
    }
    *field = Some(now);
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::entity::{EntityId, Role};
    use uuid::Uuid;

    const EXPIRY: Expiry = Expiry {
        message_expiry_s: 400.0,
        gravestone_expiry_s: 1200.0,
    };

    /// Expiry far beyond any test's clock, for tests about other rules.
    pub(crate) const TEST_EXPIRY: Expiry = Expiry {
        message_expiry_s: 1e9,
        gravestone_expiry_s: 1e9,
    };

    fn record(created_at: f64) -> MailboxRecord {
        MailboxRecord {
            id: EntityId {
                uid: Uuid::new_v4(),
                name: None,
                role: Role::Agent,
            },
            owner: "alice".into(),
            agent_mro: None,
            created_at,
            terminated_at: None,
            heartbeat_at: None,
            completed: 0,
            outgoing: 0,
            used_at: None,
            read_at: None,
            removed_at: None,
        }
    }

    #[test]
    fn slack_is_one_percent_of_the_expiry_and_at_most_a_day() {
        assert_eq!(EXPIRY.read_slack(), 4.0);
        assert_eq!(EXPIRY.use_slack(), 12.0);
        let defaults = Expiry {
            message_expiry_s: 7.0 * 86400.0,
            gravestone_expiry_s: 365.0 * 86400.0,
        };
        assert!((defaults.read_slack() - 6048.0).abs() < 1e-6);
        assert_eq!(defaults.use_slack(), 86400.0);
    }

    #[test]
    fn a_use_is_written_only_once_the_stored_one_is_older_than_the_slack() {
        let mut record = record(0.0);
        // Creation is a use.
        assert!(!note_use(&EXPIRY, &mut record, 5.0));
        assert!(note_use(&EXPIRY, &mut record, 12.5));
        assert_eq!(record.used_at, Some(12.5));
        // Within the slack: nothing to write, the stamp stays.
        assert!(!note_use(&EXPIRY, &mut record, 24.0));
        assert_eq!(record.used_at, Some(12.5));
        assert!(note_use(&EXPIRY, &mut record, 25.0));
        assert_eq!(record.used_at, Some(25.0));
    }

    #[test]
    fn removal_is_due_a_slack_after_the_expiry_of_the_last_use_it_knows() {
        let mut record = record(100.0);
        assert_eq!(EXPIRY.removal_due(&record), 100.0 + 12.0 + 1200.0);
        record.heartbeat_at = Some(150.0);
        assert_eq!(EXPIRY.removal_due(&record), 150.0 + 1212.0);
        note_use(&EXPIRY, &mut record, 300.0);
        assert_eq!(EXPIRY.removal_due(&record), 300.0 + 1212.0);
        // A use within the slack is not stored, but the due time still covers
        // it: it is at most one slack after the stored one.
        note_use(&EXPIRY, &mut record, 311.0);
        assert!(EXPIRY.removal_due(&record) >= 311.0 + 1200.0);
    }

    #[test]
    fn a_queue_is_due_from_its_oldest_unread_arrival_or_the_last_read() {
        let mut record = record(0.0);
        assert_eq!(EXPIRY.queue_due(&record, None), None);
        assert_eq!(EXPIRY.queue_due(&record, Some(50.0)), Some(450.0));
        // A read within the slack of creation is not written, and still covered.
        assert!(!note_read(&EXPIRY, &mut record, 3.0));
        assert!(EXPIRY.queue_due(&record, Some(1.0)).unwrap() >= 3.0 + 400.0);
        // A read after the oldest arrival renews it (plus the read slack).
        note_read(&EXPIRY, &mut record, 80.0);
        assert_eq!(
            EXPIRY.queue_due(&record, Some(50.0)),
            Some(80.0 + 4.0 + 400.0)
        );
        // A read before the oldest arrival does not matter.
        assert_eq!(EXPIRY.queue_due(&record, Some(200.0)), Some(600.0));
        // The alarm for an arrival rings no later than the queue's due time.
        assert!(EXPIRY.queue_due_for_arrival(200.0) <= 600.0);
    }
}
