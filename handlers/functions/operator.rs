//! Who may act as an operator, in one place: the out-of-band trigger, an
//! operator's decision, a cancel (`runs`) and a resume (`images`) all ask
//! [`authorize`], which checks the operator token
//! (`Authorization: Bearer <IMAGE_FACTORY_OPERATOR_TOKEN>`, compared in
//! constant time) and names the operator as the factory identified them.
//! Another way of signing in is another branch here.

use crate::app::{App, authorization, secret_matches};
use crate::domain::controls::{Lines, escape_option};
use crate::protocol::{HttpRequestData, HttpResponseData, InvocationResponse};

/// An operator whose request was authorised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    /// Who, as recorded on what they do: the signed-in user App Service
    /// authentication names, or `operator` for the bare token.
    pub name: String,
    /// The signed-in user, when App Service authentication named one.
    pub principal: Option<String>,
}

/// Authorises `request` as an operator's, or answers why not (503 when no
/// operator token is configured, 401 for a missing or wrong one).
pub fn authorize(app: &App, request: &HttpRequestData) -> Result<Operator, InvocationResponse> {
    let refuse = |status: u16, message: &str| {
        InvocationResponse::http(HttpResponseData::error(status, message))
    };
    let Some(expected) = app.secrets.operator.as_deref() else {
        return Err(refuse(
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
        return Err(refuse(
            401,
            "a valid operator token is required: Authorization: Bearer <token>",
        ));
    }
    let principal = escape_option(
        request
            .header("X-MS-CLIENT-PRINCIPAL-NAME")
            .map(str::to_string),
        Lines::Escape,
    );
    Ok(Operator {
        name: principal.clone().unwrap_or_else(|| "operator".into()),
        principal,
    })
}
