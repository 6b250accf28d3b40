//! Who calls the runs API, the dashboard and the operators' actions, and
//! whether they may.
//!
//! **With sign-in** (`IMAGE_FACTORY_SIGN_IN=entra`: App Service
//! authentication with Entra ID in front of the app, docs/sign-in.md) the
//! platform signs callers in and passes the principal in
//! `X-MS-CLIENT-PRINCIPAL`. The handler does not take the platform's word
//! that nobody unauthenticated gets through (an earlier version of the Flex
//! Consumption documentation said they were not blocked): a read without a
//! principal it can decode is refused (401), and an operator action (an
//! out-of-band run, a decision recorded for an approver, a rollback) needs
//! the app role [`OPERATOR_ROLE`] in the principal's `roles` claims (403
//! without it). The actor recorded is the principal's name, else its
//! object id. The operator token plays no part.
//!
//! **Without sign-in** (one machine, or a deployment without it) reads are
//! open to whoever reaches the handler (the local host listens on loopback;
//! in Azure the runs API needs a function key), and operator actions need
//! the operator token (`Authorization: Bearer`, at least 32 bytes); the
//! actor is the name the caller gives.

use crate::app::{App, authorization, secret_matches};
use crate::domain::principal::{ClientPrincipal, OPERATOR_ROLE, PRINCIPAL_HEADER};
use crate::protocol::HttpRequestData;

/// A refused caller: the status and what to tell them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// 401, 403 or 503.
    pub status: u16,
    /// What is missing and what to do.
    pub message: String,
}

impl Refused {
    fn new(status: u16, message: impl Into<String>) -> Refused {
        Refused {
            status,
            message: message.into(),
        }
    }
}

/// An operator allowed to act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// Who, when the platform said (sign-in); `None` with the operator
    /// token, whose holder names themselves.
    pub actor: Option<String>,
    /// How they were known: `sign-in` or `operator-token`.
    pub via: &'static str,
}

impl Operator {
    /// The name recorded on what they do when they give none: the signed-in
    /// principal, else `operator` (the bare token names nobody).
    pub fn recorded_as(&self) -> String {
        self.actor.clone().unwrap_or_else(|| "operator".into())
    }
}

/// The signed-in principal of `request`, required when sign-in is on.
fn principal(request: &HttpRequestData) -> Result<ClientPrincipal, Refused> {
    let Some(value) = request.header(PRINCIPAL_HEADER) else {
        tracing::warn!("request refused: sign-in is on and it carries no signed-in principal");
        return Err(Refused::new(
            401,
            "sign in first: this factory is behind App Service authentication and the request carries no signed-in principal (the command line sends an Entra ID token when IMAGE_FACTORY_API_SCOPE is set)",
        ));
    };
    ClientPrincipal::from_header(value).map_err(|e| {
        tracing::warn!(error = %e, "request refused: the signed-in principal cannot be read");
        Refused::new(401, format!("{e}; sign in again"))
    })
}

/// Checks a read (the runs API's GET, a dashboard page): with sign-in on,
/// the caller must be signed in; answers the principal then.
pub fn reader(app: &App, request: &HttpRequestData) -> Result<Option<ClientPrincipal>, Refused> {
    if !app.settings.sign_in {
        return Ok(None);
    }
    principal(request).map(Some)
}

/// Checks an operator action: with sign-in on, a signed-in principal
/// holding [`OPERATOR_ROLE`]; else the operator token.
pub fn operator(app: &App, request: &HttpRequestData) -> Result<Operator, Refused> {
    if app.settings.sign_in {
        let principal = principal(request)?;
        let Some(actor) = principal.actor().map(str::to_string) else {
            return Err(Refused::new(
                401,
                "the signed-in principal carries no name and no object id to record as the actor",
            ));
        };
        if !principal.has_role(OPERATOR_ROLE) {
            tracing::warn!(%actor, "operator action refused: the principal lacks the operator role");
            return Err(Refused::new(
                403,
                format!(
                    "{actor} does not hold the app role {OPERATOR_ROLE}; an administrator assigns it on the factory's app registration (docs/sign-in.md)"
                ),
            ));
        }
        return Ok(Operator {
            actor: Some(actor),
            via: "sign-in",
        });
    }
    let Some(expected) = app.secrets.operator.as_deref() else {
        return Err(Refused::new(
            503,
            "no operator token is configured (IMAGE_FACTORY_OPERATOR_TOKEN); operator actions are off",
        ));
    };
    let presented = request
        .header("Authorization")
        .and_then(|h| authorization(h, "Bearer"))
        .unwrap_or_default();
    if !secret_matches(expected, presented) {
        tracing::warn!("operator request refused: missing or wrong operator token");
        return Err(Refused::new(
            401,
            "a valid operator token is required: Authorization: Bearer <token>",
        ));
    }
    Ok(Operator {
        actor: None,
        via: "operator-token",
    })
}
