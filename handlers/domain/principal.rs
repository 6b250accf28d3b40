//! The signed-in caller App Service authentication passes to the app: the
//! `X-MS-CLIENT-PRINCIPAL` header, Base64-encoded JSON of the form
//! `{"auth_typ", "claims": [{"typ", "val"}], "name_typ", "role_typ"}`
//! (Microsoft's "Work with user identities in Azure App Service
//! authentication", `articles/app-service/configure-authentication-user-identities.md`
//! in MicrosoftDocs/azure-docs at commit `03c71c17`). Pure: parsing and the
//! questions the factory asks of a principal.
//!
//! **Roles.** Entra ID app roles arrive as claims of type `roles`, one claim
//! per role, whatever `role_typ` says: `role_typ` names the mapped type
//! `http://schemas.microsoft.com/ws/2008/06/identity/claims/role`, under
//! which the platform puts nothing for Entra ID's v2.0 tokens, so a check
//! keyed on `role_typ` never matches (Azure/azure-functions-host issue 3898;
//! AzureAD/microsoft-identity-web issue 1983 and pull request 2166). The
//! check here reads `roles` claims, and the mapped type as well should a
//! token carry it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// The header App Service authentication sets.
pub const PRINCIPAL_HEADER: &str = "X-MS-CLIENT-PRINCIPAL";
/// The header with the caller's name (an email address or user principal name).
pub const PRINCIPAL_NAME_HEADER: &str = "X-MS-CLIENT-PRINCIPAL-NAME";
/// The header with the caller's id (for Entra ID, the object id).
pub const PRINCIPAL_ID_HEADER: &str = "X-MS-CLIENT-PRINCIPAL-ID";
/// The app role operator actions need (rollback, out-of-band runs,
/// decisions recorded for an approver).
pub const OPERATOR_ROLE: &str = "ImageFactory.Operator";
/// The claim type of Entra ID app roles.
pub const ROLES_CLAIM: &str = "roles";
/// The mapped role claim type `role_typ` usually names.
pub const MAPPED_ROLE_CLAIM: &str = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role";
/// Claim types that carry the object id.
const OBJECT_ID_CLAIMS: [&str; 2] = [
    "http://schemas.microsoft.com/identity/claims/objectidentifier",
    "oid",
];
/// Claim types that carry a name people read, most specific first.
const NAME_CLAIMS: [&str; 5] = [
    "preferred_username",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "email",
    "name",
];
/// The largest header read: far more than any token's claims.
const MAX_HEADER: usize = 64 * 1024;

/// One claim.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Claim {
    /// Its type (mapped by the platform, so not always the token's name).
    pub typ: String,
    /// Its value.
    pub val: String,
}

/// A decoded `X-MS-CLIENT-PRINCIPAL`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ClientPrincipal {
    /// The identity provider (`aad` for Entra ID).
    pub auth_typ: String,
    /// The claims.
    pub claims: Vec<Claim>,
    /// The type of the claim that names the caller.
    #[serde(default)]
    pub name_typ: Option<String>,
    /// The role claim type the platform names (see the module's note).
    #[serde(default)]
    pub role_typ: Option<String>,
}

/// Why a principal header cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    /// Longer than any the platform sends.
    #[error("the X-MS-CLIENT-PRINCIPAL header is longer than {MAX_HEADER} bytes")]
    TooLong,
    /// Not Base64.
    #[error("the X-MS-CLIENT-PRINCIPAL header is not Base64")]
    NotBase64,
    /// Not the JSON the platform sends.
    #[error("the X-MS-CLIENT-PRINCIPAL header is not a client principal ({0})")]
    NotAPrincipal(String),
    /// A principal that names nobody.
    #[error("the X-MS-CLIENT-PRINCIPAL header names no identity provider or no claim")]
    Empty,
}

impl ClientPrincipal {
    /// Decodes the header's value.
    pub fn from_header(value: &str) -> Result<ClientPrincipal, PrincipalError> {
        let value = value.trim();
        if value.len() > MAX_HEADER {
            return Err(PrincipalError::TooLong);
        }
        let bytes = STANDARD
            .decode(value)
            .map_err(|_| PrincipalError::NotBase64)?;
        let principal: ClientPrincipal = serde_json::from_slice(&bytes)
            .map_err(|e| PrincipalError::NotAPrincipal(e.to_string()))?;
        if principal.auth_typ.trim().is_empty() || principal.claims.is_empty() {
            return Err(PrincipalError::Empty);
        }
        Ok(principal)
    }

    /// The values of the claims of type `typ`, in order.
    pub fn claims_of<'a>(&'a self, typ: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.claims
            .iter()
            .filter(move |c| c.typ == typ)
            .map(|c| c.val.as_str())
    }

    /// Whether the principal holds the app role `role`.
    pub fn has_role(&self, role: &str) -> bool {
        [ROLES_CLAIM, MAPPED_ROLE_CLAIM]
            .iter()
            .any(|typ| self.claims_of(typ).any(|v| v == role))
    }

    /// The caller's Entra ID object id, if the claims carry it.
    pub fn object_id(&self) -> Option<&str> {
        OBJECT_ID_CLAIMS
            .iter()
            .find_map(|typ| self.claims_of(typ).find(|v| !v.trim().is_empty()))
    }

    /// The caller's name as people read it: the claim `name_typ` names,
    /// else a user name, email or display name claim.
    pub fn name(&self) -> Option<&str> {
        self.name_typ
            .as_deref()
            .into_iter()
            .chain(NAME_CLAIMS)
            .find_map(|typ| self.claims_of(typ).find(|v| !v.trim().is_empty()))
    }

    /// Every name and id the caller is known by: what an approver named by
    /// email, user name or object id is matched against.
    pub fn identities(&self) -> Vec<&str> {
        self.name_typ
            .as_deref()
            .into_iter()
            .chain(NAME_CLAIMS)
            .chain(OBJECT_ID_CLAIMS)
            .flat_map(|typ| self.claims_of(typ))
            .filter(|v| !v.trim().is_empty())
            .collect()
    }

    /// Who the factory records as the actor: the name, else the object id.
    pub fn actor(&self) -> Option<&str> {
        self.name().or_else(|| self.object_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A principal as App Service sends it for an Entra ID user holding the
    /// operator role: `role_typ` names the mapped role type, the role
    /// itself arrives as a `roles` claim.
    fn platform_json(roles: &[&str]) -> serde_json::Value {
        let mut claims = vec![
            serde_json::json!({"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "5b5450db-eb26-4c1a-981c-ba1d25f0483d"}),
            serde_json::json!({"typ": "preferred_username", "val": "alice@contoso.com"}),
            serde_json::json!({"typ": "name", "val": "Alice Example"}),
            serde_json::json!({"typ": "groups", "val": "f08bbbea-b793-4a36-a5fc-136c18d8aa8f"}),
        ];
        claims.extend(
            roles
                .iter()
                .map(|r| serde_json::json!({"typ": "roles", "val": r})),
        );
        serde_json::json!({
            "auth_typ": "aad",
            "claims": claims,
            "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
            "role_typ": MAPPED_ROLE_CLAIM,
        })
    }

    fn header(json: &serde_json::Value) -> String {
        STANDARD.encode(serde_json::to_vec(json).unwrap())
    }

    #[test]
    fn the_platforms_header_decodes_and_its_roles_claims_carry_the_app_role() {
        let principal =
            ClientPrincipal::from_header(&header(&platform_json(&["Reader", OPERATOR_ROLE])))
                .unwrap();
        assert!(principal.has_role(OPERATOR_ROLE));
        assert!(!principal.has_role("ImageFactory.Admin"));
        // Keyed on role_typ, the check would find no role at all.
        let role_typ = principal.role_typ.as_deref().unwrap();
        assert_eq!(principal.claims_of(role_typ).count(), 0);
        assert_eq!(principal.name(), Some("alice@contoso.com"));
        assert_eq!(
            principal.object_id(),
            Some("5b5450db-eb26-4c1a-981c-ba1d25f0483d")
        );
        assert_eq!(principal.actor(), Some("alice@contoso.com"));
        assert!(
            principal
                .identities()
                .contains(&"5b5450db-eb26-4c1a-981c-ba1d25f0483d")
        );
        let without = ClientPrincipal::from_header(&header(&platform_json(&[]))).unwrap();
        assert!(!without.has_role(OPERATOR_ROLE));
    }

    #[test]
    fn a_role_under_the_mapped_type_counts_too() {
        let json = serde_json::json!({
            "auth_typ": "aad",
            "claims": [{"typ": MAPPED_ROLE_CLAIM, "val": OPERATOR_ROLE}],
            "role_typ": MAPPED_ROLE_CLAIM,
        });
        let principal = ClientPrincipal::from_header(&header(&json)).unwrap();
        assert!(principal.has_role(OPERATOR_ROLE));
        assert_eq!(principal.actor(), None);
    }

    #[test]
    fn headers_that_are_not_a_principal_are_refused_saying_why() {
        for (value, want) in [
            ("not base64 at all!".to_string(), PrincipalError::NotBase64),
            (
                STANDARD.encode(b"{\"auth_typ\": \"aad\""),
                PrincipalError::NotAPrincipal(String::new()),
            ),
            (
                STANDARD.encode(b"[1, 2]"),
                PrincipalError::NotAPrincipal(String::new()),
            ),
            (
                header(&serde_json::json!({"auth_typ": "aad", "claims": []})),
                PrincipalError::Empty,
            ),
            (
                header(&serde_json::json!({"auth_typ": "", "claims": [{"typ": "a", "val": "b"}]})),
                PrincipalError::Empty,
            ),
            (
                header(
                    &serde_json::json!({"auth_typ": "aad", "claims": [{"typ": "roles", "val": 7}]}),
                ),
                PrincipalError::NotAPrincipal(String::new()),
            ),
            ("A".repeat(MAX_HEADER + 4), PrincipalError::TooLong),
        ] {
            let got = ClientPrincipal::from_header(&value).unwrap_err();
            assert_eq!(
                std::mem::discriminant(&got),
                std::mem::discriminant(&want),
                "{value:.60}: {got}"
            );
        }
    }
}
