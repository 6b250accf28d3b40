//! Approvals: the request a run waits on, the decisions approvers take, and the
//! signed links that carry a decision from an email or a chat message.
//!
//! A link's token is `base64url(claims) "." base64url(HMAC-SHA256(key, claims))`.
//! The claims bind the token to one run, the approve stage, one approver and an
//! expiry; its `jti` is recorded on the run when used, so a token decides once.
//! Tokens are bearer secrets: only their `jti` is ever stored or logged.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a run waits for at its approve stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequest {
    /// Who may decide.
    pub approvers: Vec<String>,
    /// How many approvals release the run (k of n).
    pub required: u32,
    /// When the request lapses.
    pub expires_at: DateTime<Utc>,
    /// The token ids issued, one per approver (never the tokens themselves).
    pub links: Vec<IssuedLink>,
    /// Send reminders this long before the deadline (0: none).
    #[serde(default)]
    pub remind_before_hours: u32,
    /// Every notification sent or attempted, oldest first.
    #[serde(default)]
    pub notifications: Vec<Notification>,
}

/// The deadline of a request made at `now` that lapses after `hours`; `None`
/// when it would fall past the last instant the clock can represent.
pub fn deadline(now: DateTime<Utc>, hours: u32) -> Option<DateTime<Utc>> {
    now.checked_add_signed(TimeDelta::try_hours(i64::from(hours))?)
}

impl ApprovalRequest {
    /// When the reminders are due: `remind_before_hours` before the
    /// deadline; `None` when no reminder is sent (0 hours, or a time before
    /// the first instant the clock can represent).
    pub fn remind_from(&self) -> Option<DateTime<Utc>> {
        if self.remind_before_hours == 0 {
            return None;
        }
        self.expires_at
            .checked_sub_signed(TimeDelta::try_hours(i64::from(self.remind_before_hours))?)
    }

    /// Approvers who have not been notified of `kind` on `channel` yet.
    pub fn undelivered(&self, kind: NoticeKind) -> Vec<&str> {
        let mut pending: Vec<&str> = self
            .notifications
            .iter()
            .filter(|n| n.kind == kind && !n.delivered)
            .map(|n| n.approver.as_str())
            .filter(|a| {
                !self
                    .notifications
                    .iter()
                    .any(|d| d.kind == kind && d.delivered && d.approver == *a)
            })
            .collect();
        pending.sort_unstable();
        pending.dedup();
        pending
    }
}

/// Why someone was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoticeKind {
    /// The run waits for their decision.
    Request,
    /// The deadline is near and they have not decided.
    Reminder,
    /// Not about a decision: the image's scheduled runs paused after
    /// failing (told to its approvers and the operators).
    Paused,
}

/// One notification to one approver on one channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Who.
    pub approver: String,
    /// `teams`, `email` or `outbox`.
    pub channel: String,
    /// Request or reminder.
    pub kind: NoticeKind,
    /// When it was attempted.
    pub at: DateTime<Utc>,
    /// Whether the channel accepted it.
    pub delivered: bool,
    /// Why not, if it did not.
    pub error: Option<String>,
    /// What was sent, with the link replaced by `<link>` (links are secrets).
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
}

/// A link issued to one approver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedLink {
    /// The approver it was sent to.
    pub approver: String,
    /// The token's unique id (`jti`).
    pub token_id: String,
}

/// Approve or reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Let the run go on to release.
    Approve,
    /// Stop the run.
    Reject,
}

impl Verdict {
    /// `approve` or `reject`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
        }
    }

    /// `approved` or `rejected`, as a sentence tells a decision taken.
    pub fn past_tense(self) -> &'static str {
        match self {
            Verdict::Approve => "approved",
            Verdict::Reject => "rejected",
        }
    }

    /// Parses `approve` / `reject`.
    pub fn from_name(s: &str) -> Option<Verdict> {
        match s {
            "approve" => Some(Verdict::Approve),
            "reject" => Some(Verdict::Reject),
            _ => None,
        }
    }
}

/// One approver's decision, as kept in the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Who decided.
    pub approver: String,
    /// What they decided.
    pub verdict: Verdict,
    /// When.
    pub at: DateTime<Utc>,
    /// Their comment, if any.
    pub comment: Option<String>,
    /// How they were identified: `link` (a signed link) or `cli`.
    pub via: String,
    /// The id of the link's token, for decisions taken through a link.
    #[serde(default)]
    pub token_id: Option<String>,
    /// The signed-in operator who recorded it for the approver (`cli` with
    /// sign-in on), when it was not the approver's own link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_by: Option<String>,
}

/// The claims a token carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Token format version.
    pub v: u8,
    /// Id of the key that signed it.
    pub kid: String,
    /// The run.
    pub run: String,
    /// The stage (always `approve`; kept so a token can never be replayed elsewhere).
    pub stage: String,
    /// The approver it was issued to.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
}

/// A signing key with its id. Several may be active so keys can be rotated.
#[derive(Clone)]
pub struct SigningKey {
    id: String,
    secret: Vec<u8>,
}

impl SigningKey {
    /// A key named `id` with the given secret bytes (at least 32).
    pub fn new(id: impl Into<String>, secret: Vec<u8>) -> Result<SigningKey, TokenError> {
        if secret.len() < 32 {
            return Err(TokenError::WeakKey);
        }
        Ok(SigningKey {
            id: id.into(),
            secret,
        })
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The active keys: the first signs, all verify.
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not two base64url parts, or claims that do not parse.
    #[error("the approval link is malformed; use the link exactly as it was sent")]
    Malformed,
    /// Signed with a key that is not active.
    #[error("the approval link was signed with a key that is no longer active; ask for a new link")]
    UnknownKey,
    /// Signature does not match.
    #[error("the approval link's signature is not valid; use the link exactly as it was sent")]
    BadSignature,
    /// Past its expiry.
    #[error("the approval link expired; ask for a new link")]
    Expired,
    /// Signing key too short.
    #[error("an approval signing key must be at least 32 bytes")]
    WeakKey,
    /// No key configured.
    #[error("no approval signing key is configured")]
    NoKey,
}

impl KeyRing {
    /// A ring whose first key signs.
    pub fn new(keys: Vec<SigningKey>) -> Result<KeyRing, TokenError> {
        if keys.is_empty() {
            return Err(TokenError::NoKey);
        }
        Ok(KeyRing { keys })
    }

    /// Signs claims (their `kid` is set to the signing key's id).
    pub fn sign(&self, mut claims: Claims) -> String {
        let key = &self.keys[0];
        claims.kid = key.id.clone();
        // Serializing a struct of strings and integers cannot fail.
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let mut mac = key.mac();
        mac.update(&payload);
        let sig = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    /// Checks a token's signature and expiry and returns its claims.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
        let (payload_b64, sig_b64) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| TokenError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig_b64)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == claims.kid)
            .ok_or(TokenError::UnknownKey)?;
        let mut mac = key.mac();
        mac.update(&payload);
        mac.verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        if claims.v != 1 {
            return Err(TokenError::Malformed);
        }
        if now.timestamp() >= claims.exp {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ring(id: &str, byte: u8) -> KeyRing {
        KeyRing::new(vec![SigningKey::new(id, vec![byte; 32]).unwrap()]).unwrap()
    }

    fn claims(exp: i64) -> Claims {
        Claims {
            v: 1,
            kid: String::new(),
            run: "run-1".into(),
            stage: "approve".into(),
            sub: "alice".into(),
            exp,
            jti: "t1".into(),
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    #[test]
    fn a_deadline_or_reminder_past_what_the_clock_can_represent_is_none_not_a_panic() {
        let now = Utc::now();
        assert_eq!(
            deadline(now, 72),
            Some(now + TimeDelta::try_hours(72).unwrap())
        );
        assert_eq!(deadline(now, u32::MAX), None);
        assert_eq!(deadline(DateTime::<Utc>::MAX_UTC, 1), None);
        let mut request = ApprovalRequest {
            approvers: vec!["a".into()],
            required: 1,
            expires_at: DateTime::<Utc>::MIN_UTC,
            links: Vec::new(),
            remind_before_hours: 1,
            notifications: Vec::new(),
        };
        assert_eq!(request.remind_from(), None, "before the first instant");
        request.expires_at = now;
        request.remind_before_hours = u32::MAX;
        assert_eq!(request.remind_from(), None);
        request.remind_before_hours = 24;
        assert_eq!(
            request.remind_from(),
            Some(now - TimeDelta::try_hours(24).unwrap())
        );
        request.remind_before_hours = 0;
        assert_eq!(request.remind_from(), None, "0: no reminder");
    }

    #[test]
    fn a_signed_token_verifies_and_round_trips_its_claims() {
        let r = ring("k1", 7);
        let token = r.sign(claims(1000));
        let got = r.verify(&token, at(999)).unwrap();
        assert_eq!(got.run, "run-1");
        assert_eq!(got.kid, "k1");
        assert_eq!(got.sub, "alice");
    }

    #[test]
    fn an_expired_token_is_refused() {
        let r = ring("k1", 7);
        let token = r.sign(claims(1000));
        assert_eq!(r.verify(&token, at(1000)), Err(TokenError::Expired));
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let r = ring("k1", 7);
        let token = r.sign(claims(1000));
        let (_, sig) = token.split_once('.').unwrap();
        let mut forged = claims(1000);
        forged.kid = "k1".into();
        forged.sub = "mallory".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let forged_token = format!("{forged_payload}.{sig}");
        assert_eq!(
            r.verify(&forged_token, at(1)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_token_signed_with_another_key_of_the_same_id_is_refused() {
        let token = ring("k1", 8).sign(claims(1000));
        assert_eq!(
            ring("k1", 7).verify(&token, at(1)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_rotated_out_key_is_unknown_and_an_old_key_still_in_the_ring_verifies() {
        let old = SigningKey::new("k1", vec![1; 32]).unwrap();
        let new = SigningKey::new("k2", vec![2; 32]).unwrap();
        let token = KeyRing::new(vec![old.clone()]).unwrap().sign(claims(1000));
        let both = KeyRing::new(vec![new.clone(), old]).unwrap();
        assert!(both.verify(&token, at(1)).is_ok());
        let only_new = KeyRing::new(vec![new]).unwrap();
        assert_eq!(only_new.verify(&token, at(1)), Err(TokenError::UnknownKey));
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        let r = ring("k1", 7);
        for junk in ["", ".", "a.b", "no-dot", "%%%.%%%", "e30.e30", "😀.😀"] {
            assert!(r.verify(junk, at(1)).is_err(), "{junk}");
        }
    }

    #[test]
    fn keys_shorter_than_32_bytes_are_refused() {
        assert_eq!(
            SigningKey::new("k", vec![0; 31]).unwrap_err(),
            TokenError::WeakKey
        );
    }

    #[test]
    fn a_key_never_shows_its_secret_in_debug_output() {
        let k = SigningKey::new("k", b"supersecretsupersecretsupersecret".to_vec()).unwrap();
        assert!(!format!("{k:?}").contains("supersecret"));
    }
}
