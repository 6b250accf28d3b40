//! Who an approver is: the names `image.toml` lists (`[approval]
//! approvers`) resolved to people the factory can reach and recognise.
//! Pure.
//!
//! An approver is named by an **email address** or an **Entra ID object
//! id** (a GUID), directly in `image.toml`, or by a name the deployment
//! maps to one of them in `IMAGE_FACTORY_APPROVERS`
//! (`platform-lead=alice@contoso.com,security=5b5450db-…`). Email reaches
//! only approvers with an address; a signed-in caller is that approver when
//! one of its names or ids ([`crate::domain::principal::ClientPrincipal::identities`])
//! is the approver's address or object id, without regard to case. An
//! approver with neither (a plain name, as on one machine) is matched on the
//! caller's name as it is.

use std::collections::BTreeMap;
use std::fmt;

/// Who an approver is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// An email address (a user principal name is one too).
    Email(String),
    /// An Entra ID object id.
    ObjectId(String),
    /// A name that is neither: matched as it is.
    Name(String),
}

impl Identity {
    /// What `text` names: an address when it has an `@` between two
    /// non-empty parts, an object id when it is a GUID, else a plain name.
    pub fn of(text: &str) -> Identity {
        let text = text.trim();
        match text.split_once('@') {
            Some((user, domain)) if !user.is_empty() && domain.contains('.') => {
                Identity::Email(text.to_string())
            }
            _ if is_guid(text) => Identity::ObjectId(text.to_ascii_lowercase()),
            _ => Identity::Name(text.to_string()),
        }
    }

    /// The email address, if this is one.
    pub fn email(&self) -> Option<&str> {
        match self {
            Identity::Email(address) => Some(address),
            _ => None,
        }
    }

    /// Whether a caller known by `names` (its names, addresses and ids) is this one.
    pub fn is_one_of(&self, names: &[&str]) -> bool {
        let me = match self {
            Identity::Email(s) | Identity::ObjectId(s) | Identity::Name(s) => s,
        };
        names.iter().any(|n| n.trim().eq_ignore_ascii_case(me))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Email(s) => write!(f, "{s}"),
            Identity::ObjectId(s) => write!(f, "Entra ID object {s}"),
            Identity::Name(s) => write!(f, "{s}"),
        }
    }
}

/// `8-4-4-4-12` hexadecimal digits.
fn is_guid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The deployment's map of approver names to people
/// (`IMAGE_FACTORY_APPROVERS`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    entries: BTreeMap<String, Identity>,
}

impl Directory {
    /// Parses `name=identity` pairs separated by commas or semicolons;
    /// every identity must be an email address or an object id. The
    /// error names the pair and what to write.
    pub fn parse(text: &str) -> Result<Directory, String> {
        let mut entries = BTreeMap::new();
        for pair in text
            .split([',', ';', '\n'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let Some((name, who)) = pair.split_once('=') else {
                return Err(format!(
                    "`{pair}` is not name=identity (e.g. platform-lead=alice@contoso.com)"
                ));
            };
            let (name, who) = (name.trim(), who.trim());
            if name.is_empty() {
                return Err(format!("`{pair}` names no approver before `=`"));
            }
            let identity = Identity::of(who);
            if let Identity::Name(_) = identity {
                return Err(format!(
                    "approver {name}: `{who}` is neither an email address nor an Entra ID object id"
                ));
            }
            if entries.insert(name.to_string(), identity).is_some() {
                return Err(format!("approver {name} is mapped twice"));
            }
        }
        Ok(Directory { entries })
    }

    /// Who `approver` (a name `image.toml` lists) is: its entry, or what
    /// the name itself is.
    pub fn identity(&self, approver: &str) -> Identity {
        self.entries
            .get(approver)
            .cloned()
            .unwrap_or_else(|| Identity::of(approver))
    }

    /// How a page names `approver`: the name, and who it is when the
    /// directory says (`platform-lead (alice@contoso.com)`).
    pub fn describe(&self, approver: &str) -> String {
        match self.entries.get(approver) {
            Some(identity) => format!("{approver} ({identity})"),
            None => approver.to_string(),
        }
    }

    /// Whether the directory maps no one.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OID: &str = "5B5450DB-EB26-4C1A-981C-BA1D25F0483D";

    #[test]
    fn approvers_are_addresses_object_ids_or_names_the_directory_maps() {
        let directory = Directory::parse(&format!(
            "platform-lead=alice@contoso.com; security = {OID}\n"
        ))
        .unwrap();
        assert_eq!(
            directory.identity("platform-lead"),
            Identity::Email("alice@contoso.com".into())
        );
        assert_eq!(
            directory.identity("security"),
            Identity::ObjectId(OID.to_ascii_lowercase())
        );
        assert_eq!(
            directory.identity("bob@contoso.com"),
            Identity::Email("bob@contoso.com".into())
        );
        assert_eq!(directory.identity("qa"), Identity::Name("qa".into()));
        assert_eq!(
            directory.describe("platform-lead"),
            "platform-lead (alice@contoso.com)"
        );
        assert_eq!(directory.describe("qa"), "qa");
        assert_eq!(directory.identity("security").email(), None);
    }

    #[test]
    fn a_caller_is_the_approver_by_address_or_object_id_whatever_the_case() {
        let directory = Directory::parse(&format!("lead=Alice@Contoso.com,sec={OID}")).unwrap();
        let lead = directory.identity("lead");
        assert!(lead.is_one_of(&["alice@contoso.com"]));
        assert!(!lead.is_one_of(&["bob@contoso.com", "Alice Example"]));
        let sec = directory.identity("sec");
        assert!(sec.is_one_of(&["someone@contoso.com", &OID.to_ascii_lowercase()]));
        assert!(!sec.is_one_of(&["someone@contoso.com"]));
        assert!(Identity::of("platform-lead").is_one_of(&["Platform-Lead"]));
    }

    #[test]
    fn a_directory_that_names_no_one_reachable_is_refused_saying_which_pair() {
        for (text, says) in [
            ("lead", "not name=identity"),
            ("=alice@contoso.com", "names no approver"),
            ("lead=alice", "neither an email address nor"),
            ("lead=a@b.c,lead=d@e.f", "mapped twice"),
            ("lead=1234", "neither"),
        ] {
            let err = Directory::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
        assert!(Directory::parse("").unwrap().is_empty());
    }
}
