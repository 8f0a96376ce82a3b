//! Who may sign with which key, for which request types and repositories.
//!
//! The configuration's `authorization` section grants requester identities keys (by name, alias, key id or
//! fingerprint; resolved to full fingerprints at start, so a grant can never silently name another key),
//! request types and, optionally, repository prefixes. It fails closed: a grant that restricts repositories
//! allows only the types whose repository the server can verify (container and batch, whose claims must name a
//! reference inside the request's `repo`) unless it lists the others (clearsign, blob) explicitly, and no member
//! a request leaves out ever widens what it may do. The identity of a request is the AMQP `user-id` when the broker is trusted
//! to have validated it (RabbitMQ refuses a `user-id` that is not the connection's authenticated user), and
//! otherwise what the request says (`requested_by`, else the `owner_id` property) — marked unauthenticated.
//! Without an `authorization` section every configured key may be used by anyone. This module decides; it never
//! signs, and knows nothing of AMQP.

use super::refusal::Refusal;
pub use crate::config::authorization::{AuthorizationConfig, Grant};
use crate::signing::{KeyError, KeyRing};
use crate::wire::RequestType;

use std::collections::{HashMap, HashSet};

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
    types: HashSet<RequestType>,
}

impl Resolved {
    /// Whether this grant lets a request of type `kind` naming `repo` (or none) through. A request without a
    /// repository passes a repository-restricted grant only for a type the grant lists and whose repository
    /// cannot be verified anyway (clearsign, blob); a container or batch request always names one (schema).
    fn admits(&self, kind: RequestType, repo: Option<&str>) -> bool {
        if !self.types.contains(&kind) {
            return false;
        }
        if self.repositories.is_empty() {
            return true;
        }
        match repo {
            Some(r) => self.repositories.iter().any(|p| repo_in(r, p)),
            None => !kind.has_verified_repository(),
        }
    }
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

    /// Resolves every granted key against `keys` (gpg) and `cosign_keys` (a name no gpg key has). Fails naming a
    /// grant whose key is unknown or ambiguous.
    pub fn new(
        config: &AuthorizationConfig,
        keys: &KeyRing,
        cosign_keys: &crate::cosign::ring::KeyRing,
    ) -> Result<Self, String> {
        let mut grants: HashMap<String, Vec<Resolved>> = HashMap::new();
        for (i, g) in config.grants.iter().enumerate() {
            if g.requester.trim().is_empty() {
                return Err(format!("authorization.grants[{i}].requester is empty"));
            }
            let mut fingerprints = HashSet::new();
            for k in &g.keys {
                let fingerprint = match (keys.find(k), cosign_keys.find(k)) {
                    (Ok(key), _) => key.fingerprint.clone(),
                    (Err(KeyError::Unknown(_)), Some(key)) => key.fingerprint.clone(),
                    (Err(e), _) => {
                        return Err(format!(
                            "authorization.grants[{i}] ({}): key {k:?}: {e}",
                            g.requester
                        ))
                    }
                };
                fingerprints.insert(fingerprint);
            }
            let types = match &g.types {
                Some(t) if t.is_empty() => {
                    return Err(format!(
                        "authorization.grants[{i}] ({}): types is empty (it would allow nothing; \
                         leave it out for the default, or list container, batch, clearsign, blob, cosign)",
                        g.requester
                    ))
                }
                Some(t) => t.iter().copied().collect(),
                None if g.repositories.is_empty() => RequestType::ALL.into_iter().collect(),
                None => RequestType::ALL
                    .into_iter()
                    .filter(|t| t.has_verified_repository())
                    .collect(),
            };
            grants
                .entry(g.requester.clone())
                .or_default()
                .push(Resolved {
                    fingerprints,
                    repositories: g.repositories.clone(),
                    types,
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

    /// Whether `who` may send a `kind` request signed with the key `fingerprint` (labelled `key` in messages)
    /// for `repo` (the repository the request names, if any). The error says who was refused what.
    pub fn check(
        &self,
        who: &Identity,
        kind: RequestType,
        fingerprint: &str,
        key: &str,
        repo: Option<&str>,
    ) -> Result<(), Refusal> {
        let Some(config) = &self.config else {
            return Ok(());
        };
        let (who_name, key) = (who.describe(), key.to_owned());
        if config.require_authenticated && !who.authenticated {
            return Err(Refusal::NotAuthenticated { who: who_name });
        }
        let grants = self.grants.get(&who.name).map_or(&[][..], Vec::as_slice);
        let with_key: Vec<&Resolved> = grants
            .iter()
            .filter(|g| g.fingerprints.contains(fingerprint))
            .collect();
        if with_key.is_empty() {
            return Err(Refusal::KeyNotGranted { who: who_name, key });
        }
        if !with_key.iter().any(|g| g.types.contains(&kind)) {
            return Err(Refusal::TypeNotGranted {
                who: who_name,
                kind,
                key,
            });
        }
        if with_key.iter().any(|g| g.admits(kind, repo)) {
            return Ok(());
        }
        Err(match repo {
            Some(repo) => Refusal::RepositoryNotGranted {
                who: who_name,
                repo: repo.to_owned(),
                key,
            },
            None => Refusal::NoRepository { who: who_name, key },
        })
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

    const C: RequestType = RequestType::Container;
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

    /// A check's refusal as its message.
    trait AsText {
        fn text(self) -> Result<(), String>;
    }

    impl AsText for Result<(), Refusal> {
        fn text(self) -> Result<(), String> {
            self.map_err(|e| e.to_string())
        }
    }

    fn authorizer(yaml: &str) -> Result<Authorizer, String> {
        let cfg: AuthorizationConfig = serde_yaml::from_str(yaml).unwrap();
        Authorizer::new(&cfg, &ring(), &Default::default())
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
        assert_eq!(
            a.check(&alice, C, A, "release", Some("ns/app")).text(),
            Ok(())
        );
        let e = a
            .check(&alice, C, B, "beta", Some("ns/app"))
            .text()
            .unwrap_err();
        assert!(
            e.contains("alice is not authorised to sign with key beta"),
            "{e}"
        );
        let e = a
            .check(&alice, C, A, "release", Some("other/app"))
            .text()
            .unwrap_err();
        assert!(e.contains("repository \"other/app\""), "{e}");
        let bob = a.identify(None, Some("bob"), None);
        assert!(!bob.authenticated);
        assert_eq!(
            a.check(&bob, C, B, "beta", Some("any/thing")).text(),
            Ok(())
        );
        let nobody = a.identify(None, None, Some("owner"));
        let e = a.check(&nobody, C, A, "release", None).text().unwrap_err();
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
            .check(&who, C, A, "release", None)
            .text()
            .unwrap_err()
            .contains("not authenticated"));
        let who = strict.identify(Some("alice"), None, None);
        assert_eq!(strict.check(&who, C, A, "release", None).text(), Ok(()));
        let all = Authorizer::allow_all();
        assert_eq!(
            all.check(&all.identify(None, None, None), C, B, "beta", Some("x"))
                .text(),
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

    /// Every request type × (granted, other key, other repository, repository absent, type not granted), under
    /// a grant restricted to `ns/` whose types are left to the default, and one that lists them all.
    #[test]
    fn grants_fail_closed_for_every_request_type() {
        let a = authorizer(
            "{grants: [{requester: dflt, keys: [release], repositories: [ns/]}, \
             {requester: listed, keys: [release], repositories: [ns/], \
              types: [container, batch, clearsign, blob]}, \
             {requester: signer, keys: [release], repositories: [ns/], types: [clearsign]}, \
             {requester: open, keys: [release]}]}",
        )
        .unwrap();
        let who = |n: &str| a.identify(None, Some(n), None);
        let types = [
            RequestType::Container,
            RequestType::Batch,
            RequestType::ClearSign,
            RequestType::Blob,
        ];
        for kind in types {
            let verified = kind.has_verified_repository();
            let check = |n: &str, fpr: &str, repo: Option<&str>| {
                a.check(&who(n), kind, fpr, "release", repo).text()
            };
            // Granted: in the prefix, and (for clearsign and blob) no repository at all — but only where the
            // type is listed; the default grant allows just container and batch.
            for n in ["dflt", "listed", "open"] {
                let granted = verified || n != "dflt";
                assert_eq!(check(n, A, Some("ns/app")).is_ok(), granted, "{n} {kind:?}");
            }
            // Another key: never.
            for n in ["dflt", "listed", "open"] {
                let e = check(n, B, Some("ns/app")).unwrap_err();
                assert!(e.contains("not authorised to sign with key release"), "{e}");
            }
            // Another repository: never under a restricted grant.
            let e = check("listed", A, Some("other/app")).unwrap_err();
            assert!(e.contains("repository \"other/app\""), "{e}");
            assert!(check("open", A, Some("other/app")).is_ok());
            // Repository absent: a restricted grant allows it only for a listed type whose repository cannot be
            // verified; leaving `repo` out never widens anything.
            assert_eq!(check("listed", A, None).is_ok(), !verified, "{kind:?}");
            let e = check("dflt", A, None).unwrap_err();
            assert!(e.contains("not authorised"), "{e}");
            assert!(check("open", A, None).is_ok());
            // Type not granted.
            let e = check("signer", A, Some("ns/app"));
            if kind == RequestType::ClearSign {
                assert_eq!(e, Ok(()));
            } else {
                let e = e.unwrap_err();
                let t = kind.name();
                assert!(
                    e.contains(&format!("not authorised to send {t} requests")),
                    "{e}"
                );
            }
        }
        let e = a
            .check(&who("dflt"), RequestType::ClearSign, A, "release", None)
            .text()
            .unwrap_err();
        assert!(e.contains("must list the type"), "{e}");
    }

    #[test]
    fn an_empty_type_list_is_a_configuration_error() {
        let e = authorizer("{grants: [{requester: a, keys: [release], types: []}]}")
            .err()
            .unwrap();
        assert!(e.contains("types is empty"), "{e}");
        let unknown = "{grants: [{requester: a, keys: [release], types: [notary]}]}";
        let e = serde_yaml::from_str::<AuthorizationConfig>(unknown).unwrap_err();
        assert!(e.to_string().contains("unknown variant `notary`"), "{e}");
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
