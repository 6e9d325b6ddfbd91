//! Who may do what to a mailbox. Identity comes only from the authenticator; these
//! decisions are the whole of authorization.

use serde::{Deserialize, Serialize};

/// The authenticated caller. Without authentication every caller is
/// [`Identity::anonymous`], so all callers own everything they create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The client id the authenticator vouched for ("" when anonymous).
    pub client_id: String,
    /// Groups the caller belongs to (e.g. Globus groups).
    pub groups: Vec<String>,
}

impl Identity {
    pub fn anonymous() -> Self {
        Self::default()
    }

    fn is_in(&self, group_id: &str) -> bool {
        self.groups.iter().any(|group| group == group_id)
    }
}

/// Owner, or a member of a group the mailbox is shared with.
pub fn may_access(caller: &Identity, owner: &str, shares: &[String]) -> bool {
    owner == caller.client_id || shares.iter().any(|group| caller.is_in(group))
}

/// Only the owner lists or removes shares.
pub fn may_manage_shares(caller: &Identity, owner: &str) -> bool {
    owner == caller.client_id
}

/// The owner may share only with a group it belongs to (as upstream).
pub fn may_share_with(caller: &Identity, owner: &str, group_id: &str) -> bool {
    may_manage_shares(caller, owner) && caller.is_in(group_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, groups: &[&str]) -> Identity {
        Identity {
            client_id: id.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn the_owner_may_access_and_a_stranger_may_not() {
        assert!(may_access(&user("alice", &[]), "alice", &[]));
        assert!(!may_access(&user("bob", &[]), "alice", &[]));
    }

    #[test]
    fn a_member_of_a_shared_group_may_access() {
        let shares = vec!["g1".to_owned()];
        assert!(may_access(&user("bob", &["g1"]), "alice", &shares));
        assert!(!may_access(&user("bob", &["g2"]), "alice", &shares));
    }

    #[test]
    fn anonymous_callers_share_one_identity_and_so_own_everything_anonymous() {
        assert!(may_access(&Identity::anonymous(), "", &[]));
        assert!(may_manage_shares(&Identity::anonymous(), ""));
    }

    #[test]
    fn only_the_owner_manages_shares_and_only_with_its_own_groups() {
        assert!(may_share_with(&user("alice", &["g1"]), "alice", "g1"));
        assert!(!may_share_with(&user("alice", &["g1"]), "alice", "g2"));
        assert!(!may_share_with(&user("bob", &["g1"]), "alice", "g1"));
        assert!(!may_manage_shares(&user("bob", &["g1"]), "alice"));
        // Without authentication there are no groups, so nothing can be shared (upstream).
        assert!(!may_share_with(&Identity::anonymous(), "", "g1"));
    }
}
