//! Who may sign with which key, and for which repositories.
//!
//! The configuration's `authorization` section grants requester identities keys (by name, alias, key id or
//! fingerprint; resolved to full fingerprints at start, so a grant can never silently name another key) and,
//! optionally, repository prefixes. The identity of a request is the AMQP `user-id` when the broker is trusted
//! to have validated it (RabbitMQ refuses a `user-id` that is not the connection's authenticated user), and
//! otherwise what the request says (`requested_by`, else the `owner_id` property) — marked unauthenticated.
//! Without an `authorization` section every configured key may be used by anyone. This module decides; it never
//! signs, and knows nothing of AMQP.

use crate::signing::KeyRing;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// The `authorization` section of the server configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// Take the AMQP `user-id` of a request as its authenticated identity. Only for brokers that validate it
    /// against the publishing connection's user (RabbitMQ does, on AMQP 1.0 and 0-9-1).
    #[serde(default)]
    pub trust_user_id: bool,
    /// Refuse requests whose identity is not authenticated (no trusted `user-id`).
    #[serde(default)]
    pub require_authenticated: bool,
    /// The grants; an identity not listed may sign with nothing.
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// What one requester identity may do.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The identity: a broker user name, or a `requested_by` value.
    pub requester: String,
    /// Keys it may sign with: names, aliases, key ids or fingerprints of configured keys.
    pub keys: Vec<String>,
    /// Repository prefixes it may sign for (`ns/` matches `ns/app`; `ns/app` matches only `ns/app`). Empty: all.
    #[serde(default)]
    pub repositories: Vec<String>,
}

/// A request's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The name, possibly empty.
    pub name: String,
    /// True when the broker vouched for it.
    pub authenticated: bool,
}

impl Identity {
    /// How logs show it: the name, and whether it is authenticated.
    pub fn describe(&self) -> String {
        let name = if self.name.is_empty() {
            "(anonymous)"
        } else {
            &self.name
        };
        if self.authenticated {
            name.to_owned()
        } else {
            format!("{name} (unauthenticated)")
        }
    }
}

struct Resolved {
    fingerprints: HashSet<String>,
    repositories: Vec<String>,
}

/// Decides whether an identity may sign with a key for a repository.
pub struct Authorizer {
    config: Option<AuthorizationConfig>,
    grants: HashMap<String, Vec<Resolved>>,
}

impl Authorizer {
    /// Everything allowed to everyone (no `authorization` section).
    pub fn allow_all() -> Self {
        Authorizer {
            config: None,
            grants: HashMap::new(),
        }
    }

    /// Resolves every granted key against `keys`. Fails naming a grant whose key is unknown or ambiguous.
    pub fn new(config: &AuthorizationConfig, keys: &KeyRing) -> Result<Self, String> {
        let mut grants: HashMap<String, Vec<Resolved>> = HashMap::new();
        for (i, g) in config.grants.iter().enumerate() {
            if g.requester.trim().is_empty() {
                return Err(format!("authorization.grants[{i}].requester is empty"));
            }
            let mut fingerprints = HashSet::new();
            for k in &g.keys {
                let key = keys.find(k).map_err(|e| {
                    format!(
                        "authorization.grants[{i}] ({}): key {k:?}: {e}",
                        g.requester
                    )
                })?;
                fingerprints.insert(key.fingerprint.clone());
            }
            grants
                .entry(g.requester.clone())
                .or_default()
                .push(Resolved {
                    fingerprints,
                    repositories: g.repositories.clone(),
                });
        }
        Ok(Authorizer {
            config: Some(config.clone()),
            grants,
        })
    }

    /// The identity of a request: its `user-id` when trusted, else `requested_by`, else `owner_id`.
    pub fn identify(
        &self,
        user_id: Option<&str>,
        requested_by: Option<&str>,
        owner_id: Option<&str>,
    ) -> Identity {
        let trusted = self.config.as_ref().is_some_and(|c| c.trust_user_id);
        match user_id.filter(|u| trusted && !u.is_empty()) {
            Some(u) => Identity {
                name: u.to_owned(),
                authenticated: true,
            },
            None => Identity {
                name: requested_by
                    .filter(|s| !s.is_empty())
                    .or(owner_id)
                    .unwrap_or_default()
                    .to_owned(),
                authenticated: false,
            },
        }
    }

    /// Whether `who` may sign with the key `fingerprint` (labelled `key` in messages) for `repo` (when the
    /// request names one). The error says who was refused what.
    pub fn check(
        &self,
        who: &Identity,
        fingerprint: &str,
        key: &str,
        repo: Option<&str>,
    ) -> Result<(), String> {
        let Some(config) = &self.config else {
            return Ok(());
        };
        if config.require_authenticated && !who.authenticated {
            return Err(format!(
                "requester {} is not authenticated; this server only signs for requesters the broker \
                 authenticated (AMQP user-id)",
                who.describe()
            ));
        }
        let grants = self.grants.get(&who.name).map_or(&[][..], Vec::as_slice);
        let with_key: Vec<&Resolved> = grants
            .iter()
            .filter(|g| g.fingerprints.contains(fingerprint))
            .collect();
        if with_key.is_empty() {
            return Err(format!(
                "requester {} is not authorised to sign with key {key}",
                who.describe()
            ));
        }
        let Some(repo) = repo else { return Ok(()) };
        let allowed = with_key
            .iter()
            .any(|g| g.repositories.is_empty() || g.repositories.iter().any(|p| repo_in(repo, p)));
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "requester {} is not authorised to sign for repository {repo:?} with key {key}",
                who.describe()
            ))
        }
    }
}

/// `repo` is `prefix` or below it: a prefix ending in `/` matches anything under it; otherwise it matches itself
/// and its sub-paths (`ns/app` matches `ns/app` and `ns/app/x`, never `ns/apple`).
fn repo_in(repo: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        return repo.starts_with(prefix);
    }
    repo == prefix
        || repo
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::ResolvedKey;

    const A: &str = "0123456789ABCDEF0123456789ABCDEF01234567";
    const B: &str = "FEDCBA9876543210FEDCBA9876543210FEDCBA98";

    fn ring() -> KeyRing {
        let key = |fpr: &str, name: &str| ResolvedKey {
            fingerprint: fpr.into(),
            name: Some(name.into()),
            aliases: vec![],
        };
        KeyRing::new(vec![key(A, "release"), key(B, "beta")]).unwrap()
    }

    fn authorizer(yaml: &str) -> Result<Authorizer, String> {
        let cfg: AuthorizationConfig = serde_yaml::from_str(yaml).unwrap();
        Authorizer::new(&cfg, &ring())
    }

    #[test]
    fn grants_name_keys_and_repositories() {
        let a = authorizer(
            "{trust_user_id: true, grants: [{requester: alice, keys: [release], repositories: [ns/]}, \
             {requester: bob, keys: ['76543210FEDCBA98', release]}]}",
        )
        .unwrap();
        let alice = a.identify(Some("alice"), Some("mallory"), None);
        assert!(alice.authenticated);
        assert_eq!(a.check(&alice, A, "release", Some("ns/app")), Ok(()));
        let e = a.check(&alice, B, "beta", Some("ns/app")).unwrap_err();
        assert!(
            e.contains("alice is not authorised to sign with key beta"),
            "{e}"
        );
        let e = a
            .check(&alice, A, "release", Some("other/app"))
            .unwrap_err();
        assert!(e.contains("repository \"other/app\""), "{e}");
        let bob = a.identify(None, Some("bob"), None);
        assert!(!bob.authenticated);
        assert_eq!(a.check(&bob, B, "beta", Some("any/thing")), Ok(()));
        let nobody = a.identify(None, None, Some("owner"));
        let e = a.check(&nobody, A, "release", None).unwrap_err();
        assert!(e.contains("owner (unauthenticated)"), "{e}");
    }

    #[test]
    fn untrusted_user_ids_and_unauthenticated_requesters() {
        let a = authorizer("{grants: [{requester: alice, keys: [release]}]}").unwrap();
        let who = a.identify(Some("alice"), Some("bob"), None);
        assert_eq!((who.name.as_str(), who.authenticated), ("bob", false));
        let strict = authorizer(
            "{trust_user_id: true, require_authenticated: true, grants: [{requester: alice, keys: [release]}]}",
        )
        .unwrap();
        let who = strict.identify(None, Some("alice"), None);
        assert!(strict
            .check(&who, A, "release", None)
            .unwrap_err()
            .contains("not authenticated"));
        let who = strict.identify(Some("alice"), None, None);
        assert_eq!(strict.check(&who, A, "release", None), Ok(()));
        let all = Authorizer::allow_all();
        assert_eq!(
            all.check(&all.identify(None, None, None), B, "beta", Some("x")),
            Ok(())
        );
    }

    #[test]
    fn unknown_or_ambiguous_granted_keys_are_configuration_errors() {
        let e = authorizer("{grants: [{requester: a, keys: [nope]}]}")
            .err()
            .unwrap();
        assert!(e.contains("grants[0]") && e.contains("nope"), "{e}");
        assert!(authorizer("{grants: [{requester: a, keys: [reelase]}]}").is_err());
        assert!(authorizer("{grants: [{requester: '', keys: [release]}]}").is_err());
    }

    #[test]
    fn repository_prefixes() {
        assert!(repo_in("ns/app", "ns/"));
        assert!(repo_in("ns/app", "ns/app"));
        assert!(repo_in("ns/app/x", "ns/app"));
        assert!(!repo_in("ns/apple", "ns/app"));
        assert!(!repo_in("nsx/app", "ns/"));
    }
}
