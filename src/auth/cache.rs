//! Identities recently established, so a busy client does not cost one identity-
//! provider round trip per request. Bounded; entries expire after the TTL.

use std::collections::HashMap;

use crate::core::permission::Identity;

/// At most this many identities are kept; when full, expired ones are dropped,
/// and if none had expired, everything is (a burst of new tokens is rare).
const CAPACITY: usize = 1024;

#[derive(Debug, Default)]
pub struct IdentityCache {
    entries: HashMap<String, (Identity, f64)>,
}

impl IdentityCache {
    pub fn get(&self, key: &str, now: f64) -> Option<Identity> {
        self.entries
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map(|(identity, _)| identity.clone())
    }

    pub fn put(&mut self, key: &str, identity: Identity, now: f64, ttl_s: f64) {
        if self.entries.len() >= CAPACITY {
            self.entries.retain(|_, (_, expires)| *expires > now);
            if self.entries.len() >= CAPACITY {
                self.entries.clear();
            }
        }
        self.entries.insert(key.to_owned(), (identity, now + ttl_s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            client_id: "alice".into(),
            groups: vec![],
        }
    }

    #[test]
    fn an_entry_is_served_until_its_ttl_passes() {
        let mut cache = IdentityCache::default();
        cache.put("t", alice(), 100.0, 60.0);
        assert_eq!(cache.get("t", 159.0), Some(alice()));
        assert_eq!(cache.get("t", 160.0), None);
        assert_eq!(cache.get("other", 100.0), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut cache = IdentityCache::default();
        for i in 0..(CAPACITY * 3) {
            cache.put(&i.to_string(), alice(), 0.0, 60.0);
        }
        assert!(cache.entries.len() <= CAPACITY);
        assert!(cache.get(&(CAPACITY * 3 - 1).to_string(), 1.0).is_some());
    }
}
