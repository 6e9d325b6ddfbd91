//! Discovery rules. Each class name has its own directory (one Durable Object), listing
//! every agent whose MRO contains that class, in registration order. Registering an
//! agent writes to one directory per class in its MRO; `discover` reads exactly one —
//! so its cost grows with the number of matches, never with the number of mailboxes.

use uuid::Uuid;

use super::mailbox::Registration;
use super::permission::{may_access, Identity};
use crate::protocol::error::ExchangeError;
use crate::store::{DirectoryEntry, DirectoryStore};

/// The directory entries an agent registration writes, keyed by class name: its own
/// class (MRO[0]) as an exact entry, each base class as a subclass entry.
pub fn entries_for(registration: &Registration) -> Vec<(String, DirectoryEntry)> {
    let mut entries: Vec<(String, DirectoryEntry)> = Vec::new();
    for (position, class) in registration.agent_mro.iter().enumerate() {
        if entries.iter().any(|(known, _)| known == class) {
            continue;
        }
        entries.push((
            class.clone(),
            DirectoryEntry {
                uid: registration.id.uid,
                owner: registration.owner.clone(),
                exact: position == 0,
                shares: registration.shares.clone(),
            },
        ));
    }
    entries
}

/// Agents of the directory's class that `caller` may access: with
/// `allow_subclasses`, every agent whose MRO contains the class; otherwise only
/// agents whose own class it is. Terminated agents were removed at termination.
pub fn discover<S: DirectoryStore>(
    store: &S,
    caller: &Identity,
    allow_subclasses: bool,
) -> Result<Vec<Uuid>, ExchangeError> {
    Ok(store
        .list(!allow_subclasses)?
        .into_iter()
        .filter(|entry| may_access(caller, &entry.owner, &entry.shares))
        .map(|entry| entry.uid)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::entity::Role;
    use crate::protocol::message::tests::entity;
    use crate::store::memory::MemoryDirectory;
    use std::collections::HashMap;

    fn registration(owner: &str, mro: &[&str]) -> Registration {
        Registration {
            id: entity(Role::Agent),
            owner: owner.into(),
            agent_mro: mro.iter().map(|c| c.to_string()).collect(),
            shares: vec![],
        }
    }

    /// Directories by class name, as the Worker keeps them in separate objects.
    #[derive(Default)]
    struct Directories(HashMap<String, MemoryDirectory>);

    impl Directories {
        fn register(&mut self, registration: &Registration) {
            for (class, entry) in entries_for(registration) {
                self.0.entry(class).or_default().upsert(&entry).unwrap();
            }
        }
        fn unregister(&mut self, registration: &Registration) {
            for (class, entry) in entries_for(registration) {
                self.0.entry(class).or_default().remove(entry.uid).unwrap();
            }
        }
        fn discover(&mut self, caller: &str, class: &str, allow_subclasses: bool) -> Vec<Uuid> {
            let caller = Identity {
                client_id: caller.into(),
                groups: vec![],
            };
            discover(
                self.0.entry(class.into()).or_default(),
                &caller,
                allow_subclasses,
            )
            .unwrap()
        }
    }

    #[test]
    fn an_agent_is_listed_under_every_class_of_its_mro_exact_only_under_its_own() {
        let entries = entries_for(&registration("", &["m.C", "m.A", "m.B"]));
        let summary: Vec<(&str, bool)> =
            entries.iter().map(|(c, e)| (c.as_str(), e.exact)).collect();
        assert_eq!(summary, vec![("m.C", true), ("m.A", false), ("m.B", false)]);
    }

    #[test]
    fn exact_discovery_matches_mro_head_and_subclass_discovery_matches_anywhere() {
        let mut directories = Directories::default();
        let base = registration("", &["m.A"]);
        let child = registration("", &["m.C", "m.A"]);
        directories.register(&base);
        directories.register(&child);
        assert_eq!(directories.discover("", "m.A", false), vec![base.id.uid]);
        assert_eq!(
            directories.discover("", "m.A", true),
            vec![base.id.uid, child.id.uid]
        );
        assert_eq!(directories.discover("", "m.C", false), vec![child.id.uid]);
        assert!(directories.discover("", "m.Z", true).is_empty());
    }

    #[test]
    fn discovery_keeps_registration_order_and_ignores_repeat_registrations() {
        let mut directories = Directories::default();
        let agents: Vec<Registration> = (0..5).map(|_| registration("", &["m.A"])).collect();
        for agent in &agents {
            directories.register(agent);
        }
        directories.register(&agents[0]);
        let expected: Vec<Uuid> = agents.iter().map(|a| a.id.uid).collect();
        assert_eq!(directories.discover("", "m.A", false), expected);
    }

    #[test]
    fn terminated_agents_disappear_from_discovery() {
        let mut directories = Directories::default();
        let (one, two) = (
            registration("", &["m.B", "m.A"]),
            registration("", &["m.A"]),
        );
        directories.register(&one);
        directories.register(&two);
        directories.unregister(&one);
        assert_eq!(directories.discover("", "m.A", true), vec![two.id.uid]);
        assert!(directories.discover("", "m.B", false).is_empty());
    }

    #[test]
    fn discovery_lists_only_agents_the_caller_may_access() {
        let mut directories = Directories::default();
        let (mine, theirs) = (
            registration("alice", &["m.A"]),
            registration("bob", &["m.A"]),
        );
        directories.register(&mine);
        directories.register(&theirs);
        assert_eq!(
            directories.discover("alice", "m.A", false),
            vec![mine.id.uid]
        );
    }
}
