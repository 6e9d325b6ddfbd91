//! Static bearer tokens for self-hosters and CI: a secret maps each token to an
//! identity. Tokens are compared in constant time, and every entry is compared, so
//! timing reveals neither a token's prefix nor which entry matched.

use serde::Deserialize;
use std::collections::BTreeMap;

use super::AuthError;
use crate::core::permission::Identity;

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Entry {
    client_id: String,
    #[serde(default)]
    groups: Vec<String>,
}

/// The token → identity map from `EXCHANGE_TOKENS`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenTable(Vec<(String, Identity)>);

impl TokenTable {
    /// Parses `{"<token>": {"client_id": "...", "groups": ["..."]}, ...}`.
    pub fn parse(json: &str) -> Result<Self, String> {
        let entries: BTreeMap<String, Entry> = serde_json::from_str(json).map_err(|error| {
            format!(
                "EXCHANGE_TOKENS must be a JSON object of token -> {{client_id, groups}}: {error}"
            )
        })?;
        if let Some((_, entry)) = entries
            .iter()
            .find(|(token, entry)| token.is_empty() || entry.client_id.is_empty())
        {
            return Err(format!(
                "EXCHANGE_TOKENS has an empty token or client_id (client {:?})",
                entry.client_id
            ));
        }
        Ok(Self(
            entries
                .into_iter()
                .map(|(token, entry)| {
                    let identity = Identity {
                        client_id: entry.client_id,
                        groups: entry.groups,
                    };
                    (token, identity)
                })
                .collect(),
        ))
    }

    pub fn identify(&self, token: &str) -> Result<Identity, AuthError> {
        let mut found = None;
        for (known, identity) in &self.0 {
            if constant_time_eq(known.as_bytes(), token.as_bytes()) {
                found = Some(identity);
            }
        }
        found
            .cloned()
            .ok_or_else(|| AuthError::rejected("unknown token"))
    }
}

/// Compares without stopping at the first difference. Lengths are not secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str =
        r#"{"tok-a": {"client_id": "alice", "groups": ["g1"]}, "tok-b": {"client_id": "bob"}}"#;

    #[test]
    fn a_known_token_identifies_its_client_and_groups() {
        let table = TokenTable::parse(TABLE).unwrap();
        let alice = table.identify("tok-a").unwrap();
        assert_eq!(
            (alice.client_id.as_str(), alice.groups.clone()),
            ("alice", vec!["g1".to_owned()])
        );
        assert!(table.identify("tok-b").unwrap().groups.is_empty());
    }

    #[test]
    fn unknown_tokens_and_near_misses_are_rejected() {
        let table = TokenTable::parse(TABLE).unwrap();
        for token in ["tok-c", "tok-", "tok-aa", "TOK-A", ""] {
            assert!(
                matches!(table.identify(token), Err(AuthError::Rejected { .. })),
                "{token}"
            );
        }
    }

    #[test]
    fn malformed_tables_are_configuration_errors() {
        for bad in [
            "",
            "[]",
            r#"{"t": "alice"}"#,
            r#"{"t": {}}"#,
            r#"{"": {"client_id": "a"}}"#,
        ] {
            assert!(TokenTable::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn constant_time_eq_matches_only_equal_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
