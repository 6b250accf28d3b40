//! Who the factory is to Azure: Entra ID credentials, never keys. In Azure,
//! the managed identity of the Function App or the build job (a user-assigned
//! one when `AZURE_CLIENT_ID` names it); on a workstation, the developer's
//! own sign-in (`az login`, `azd auth login`). Every Azure client of the
//! factory (Cosmos DB, Resource Manager, Communication Services, Blob
//! Storage, Application Insights ingestion) takes its tokens from here, and
//! so does packer's client assertion on the build worker.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;

/// The Entra ID identity the factory uses.
#[derive(Clone, PartialEq, Eq)]
pub enum Identity {
    /// The managed identity of the compute it runs on (`IDENTITY_ENDPOINT` or
    /// `MSI_ENDPOINT` is set there); `client_id` picks a user-assigned one.
    Managed {
        /// The user-assigned identity's client id, if any.
        client_id: Option<String>,
    },
    /// Developer credentials: the Azure CLI's or the Azure Developer CLI's sign-in.
    Developer,
}

impl Identity {
    /// Chooses from the environment (given as a lookup, so tests need not set it).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Identity {
        let in_azure = var("IDENTITY_ENDPOINT").is_some() || var("MSI_ENDPOINT").is_some();
        let client_id = var("AZURE_CLIENT_ID");
        if in_azure || client_id.is_some() {
            Identity::Managed { client_id }
        } else {
            Identity::Developer
        }
    }

    /// A credential that gets tokens for this identity.
    pub fn credential(&self) -> Result<Arc<dyn TokenCredential>, String> {
        match self {
            Identity::Managed { client_id } => {
                let options = azure_identity::ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id
                        .clone()
                        .map(azure_identity::UserAssignedId::ClientId),
                    ..Default::default()
                };
                let credential: Arc<dyn TokenCredential> =
                    azure_identity::ManagedIdentityCredential::new(Some(options))
                        .map_err(|e| format!("managed identity: {e}"))?;
                Ok(credential)
            }
            Identity::Developer => {
                let credential: Arc<dyn TokenCredential> =
                    azure_identity::DeveloperToolsCredential::new(None).map_err(|e| {
                        format!("no developer credential (sign in with `az login`): {e}")
                    })?;
                Ok(credential)
            }
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Managed { client_id } => f
                .debug_struct("Managed")
                .field("client_id", client_id)
                .finish(),
            Identity::Developer => f.write_str("Developer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_managed_identity_is_used_in_azure_and_developer_credentials_elsewhere() {
        assert_eq!(
            Identity::from_vars(vars(&[(
                "IDENTITY_ENDPOINT",
                "http://localhost:42356/msi/token"
            )])),
            Identity::Managed { client_id: None }
        );
        assert_eq!(
            Identity::from_vars(vars(&[(
                "AZURE_CLIENT_ID",
                "11111111-2222-3333-4444-555555555555"
            )])),
            Identity::Managed {
                client_id: Some("11111111-2222-3333-4444-555555555555".into())
            }
        );
        assert_eq!(Identity::from_vars(vars(&[])), Identity::Developer);
    }
}
