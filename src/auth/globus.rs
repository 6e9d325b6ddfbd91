//! Globus Auth, as upstream's `GlobusAuthenticator`: introspect the bearer token with
//! the exchange's confidential client, require it active and meant for this
//! exchange (audience), take `username` as the client id, then trade the token for
//! a Groups API dependent token and list the caller's active group memberships.
//! These functions read Globus's answers; `edge::authenticate` makes the calls.

use serde::Deserialize;
use serde_json::Value;

use super::AuthError;

/// The scope of the dependent token used to read the caller's groups.
pub const GROUPS_SCOPE: &str =
    "urn:globus:auth:scope:groups.api.globus.org:view_my_groups_and_memberships";

/// The OAuth2 grant that trades a token for tokens to downstream services.
pub const DEPENDENT_TOKEN_GRANT: &str = "urn:globus:auth:grant_type:dependent_token";

#[derive(Debug, Clone, PartialEq)]
pub struct GlobusSettings {
    /// The exchange's confidential client (a secret in production).
    pub client_id: String,
    pub client_secret: String,
    /// Must be in a token's audience, so a token minted for another service cannot
    /// be replayed here (confused deputy). Defaults to `client_id`, as upstream.
    pub resource_server: String,
    pub auth_url: String,
    pub groups_url: String,
}

impl GlobusSettings {
    pub fn introspect_url(&self) -> String {
        format!("{}/v2/oauth2/token/introspect", self.auth_url)
    }

    pub fn token_url(&self) -> String {
        format!("{}/v2/oauth2/token", self.auth_url)
    }

    pub fn my_groups_url(&self) -> String {
        format!("{}/v2/groups/my_groups", self.groups_url)
    }
}

/// An answer that is not what Globus documents is an outage, not the caller's fault.
fn garbled(what: &str, error: impl std::fmt::Display) -> AuthError {
    AuthError::unavailable(format!("unexpected {what} answer from Globus: {error}"))
}

#[derive(Deserialize)]
struct Introspection {
    #[serde(default)]
    active: bool,
    #[serde(default)]
    aud: Vec<String>,
    #[serde(default)]
    username: Option<String>,
}

/// The client id from an introspection answer, if the token is usable here.
pub fn client_id_from_introspection(
    body: &str,
    resource_server: &str,
) -> Result<String, AuthError> {
    let answer: Introspection =
        serde_json::from_str(body).map_err(|e| garbled("introspection", e))?;
    if !answer.active {
        return Err(AuthError::rejected("token is expired or has been revoked"));
    }
    if !answer
        .aud
        .iter()
        .any(|audience| audience == resource_server)
    {
        return Err(AuthError::rejected(format!(
            "token audience does not include {resource_server:?}"
        )));
    }
    answer
        .username
        .filter(|name| !name.is_empty())
        .ok_or_else(|| AuthError::rejected("token has no username"))
}

/// The Groups API token among the dependent tokens (a list, or an object with
/// `other_tokens` plus the first token's fields); `None` if Globus granted none.
pub fn groups_token(body: &str) -> Result<Option<String>, AuthError> {
    let answer: Value = serde_json::from_str(body).map_err(|e| garbled("dependent token", e))?;
    let tokens: Vec<&Value> = match &answer {
        Value::Array(tokens) => tokens.iter().collect(),
        Value::Object(first) => std::iter::once(&answer)
            .chain(
                first
                    .get("other_tokens")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten(),
            )
            .collect(),
        other => return Err(garbled("dependent token", format!("a JSON {other}"))),
    };
    Ok(tokens
        .into_iter()
        .find(|token| {
            token["scope"]
                .as_str()
                .is_some_and(|scopes| scopes.split(' ').any(|scope| scope == GROUPS_SCOPE))
        })
        .and_then(|token| token["access_token"].as_str())
        .map(str::to_owned))
}

#[derive(Deserialize)]
struct Group {
    id: String,
    #[serde(default)]
    my_memberships: Vec<Membership>,
}

#[derive(Deserialize)]
struct Membership {
    status: String,
}

/// Ids of the groups with at least one active membership of the caller.
pub fn active_groups(body: &str) -> Result<Vec<String>, AuthError> {
    let groups: Vec<Group> = serde_json::from_str(body).map_err(|e| garbled("my_groups", e))?;
    Ok(groups
        .into_iter()
        .filter(|group| group.my_memberships.iter().any(|m| m.status == "active"))
        .map(|group| group.id)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_active_token_for_this_exchange_yields_its_username() {
        let body =
            r#"{"active": true, "aud": ["other", "exchange"], "username": "alice@example.org"}"#;
        assert_eq!(
            client_id_from_introspection(body, "exchange"),
            Ok("alice@example.org".into())
        );
    }

    #[test]
    fn inactive_tokens_and_foreign_audiences_are_rejected() {
        let inactive = r#"{"active": false}"#;
        let foreign = r#"{"active": true, "aud": ["other"], "username": "a"}"#;
        for body in [inactive, foreign] {
            assert!(matches!(
                client_id_from_introspection(body, "exchange"),
                Err(AuthError::Rejected { .. })
            ));
        }
    }

    #[test]
    fn garbled_introspection_is_an_outage_not_a_rejection() {
        assert!(matches!(
            client_id_from_introspection("<html>", "x"),
            Err(AuthError::Unavailable { .. })
        ));
    }

    #[test]
    fn the_groups_token_is_found_by_scope_in_either_answer_shape() {
        let list = format!(
            r#"[{{"scope": "other", "access_token": "x"}}, {{"scope": "{GROUPS_SCOPE}", "access_token": "g"}}]"#
        );
        assert_eq!(groups_token(&list), Ok(Some("g".into())));
        let object = format!(
            r#"{{"scope": "a", "access_token": "x", "other_tokens": [{{"scope": "{GROUPS_SCOPE}", "access_token": "g2"}}]}}"#
        );
        assert_eq!(groups_token(&object), Ok(Some("g2".into())));
        assert_eq!(groups_token("[]"), Ok(None));
    }

    #[test]
    fn only_groups_with_an_active_membership_count() {
        let body = r#"[
            {"id": "g1", "my_memberships": [{"status": "invited"}, {"status": "active"}]},
            {"id": "g2", "my_memberships": [{"status": "invited"}]},
            {"id": "g3", "my_memberships": []}
        ]"#;
        assert_eq!(active_groups(body), Ok(vec!["g1".to_owned()]));
    }
}
