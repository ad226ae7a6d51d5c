//! The deprovisioning decision. An EASIE session lives only as long as the upstream account:
//! before minting tokens for a session whose last upstream check is older than the interval
//! (and in a background sweep) the core refreshes upstream and asks [`decide`] what to do.
//!
//! Refused grants, disabled or deleted accounts, and refreshed identities that no longer match
//! the one recorded at sign-in revoke. An unreachable upstream is tolerated for the grace
//! period after the last success, with retries spaced out as the outage lengthens, and then
//! fails closed. Time is always passed in (`now`, unix seconds).

use crate::{
    domain::Domain, google::GoogleClaims, microsoft::MicrosoftClaims, provider::TenantId,
    provider::normalize_guid, refusal::Refusal,
};

pub const DEFAULT_RECHECK_INTERVAL_SECS: i64 = 600;
/// A shorter interval would put a refresh in front of nearly every token request.
pub const MIN_RECHECK_INTERVAL_SECS: i64 = 60;
/// A day: beyond it the "deprovisioning" would be too late to deserve the name.
pub const MAX_RECHECK_INTERVAL_SECS: i64 = 86_400;
pub const DEFAULT_UPSTREAM_GRACE_SECS: i64 = 3_600;
/// A week: a longer outage tolerance would keep a deleted user signed in for too long.
pub const MAX_UPSTREAM_GRACE_SECS: i64 = 604_800;
/// Retry spacing bounds during an outage.
pub const MIN_RETRY_SECS: i64 = 15;
pub const MAX_RETRY_SECS: i64 = 300;

/// The validated recheck settings (`LATCHKEY_EASIE_RECHECK_INTERVAL`,
/// `LATCHKEY_EASIE_UPSTREAM_GRACE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecheckPolicy {
    interval: i64,
    grace: i64,
}

impl Default for RecheckPolicy {
    fn default() -> Self {
        Self { interval: DEFAULT_RECHECK_INTERVAL_SECS, grace: DEFAULT_UPSTREAM_GRACE_SECS }
    }
}

impl RecheckPolicy {
    /// Interval 60 s..=1 day; grace 0..=1 week (0 fails closed at the first upstream failure).
    pub fn new(interval_secs: i64, grace_secs: i64) -> Result<Self, Refusal> {
        if interval_secs < MIN_RECHECK_INTERVAL_SECS {
            return Err(Refusal::InvalidSetting("recheck interval", "at least 60 seconds"));
        }
        if interval_secs > MAX_RECHECK_INTERVAL_SECS {
            return Err(Refusal::InvalidSetting("recheck interval", "at most one day"));
        }
        if !(0..=MAX_UPSTREAM_GRACE_SECS).contains(&grace_secs) {
            return Err(Refusal::InvalidSetting("upstream grace", "between 0 and one week"));
        }
        Ok(Self { interval: interval_secs, grace: grace_secs })
    }

    pub fn interval(&self) -> i64 {
        self.interval
    }

    pub fn grace(&self) -> i64 {
        self.grace
    }
}

/// The claims that must never change for the same upstream account: recorded at sign-in,
/// compared with every refreshed ID token. Values are normalised (lower-case GUIDs and
/// domains) so that only a real change differs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentitySnapshot {
    pub sub: Option<String>,
    pub oid: Option<String>,
    pub tid: Option<String>,
    pub hd: Option<String>,
}

impl IdentitySnapshot {
    pub fn google(claims: &GoogleClaims) -> Self {
        let hd = claims.hd.as_ref().map(|h| match Domain::parse(h) {
            Ok(d) => d.as_str().to_owned(),
            Err(_) => h.clone(),
        });
        Self { sub: claims.sub.clone(), oid: None, tid: None, hd }
    }

    pub fn microsoft(claims: &MicrosoftClaims) -> Self {
        let guid = |v: &String| normalize_guid(v).unwrap_or_else(|| v.clone());
        let tid = claims.tid.as_ref().map(|t| match TenantId::parse(t) {
            Ok(t) => t.as_str().to_owned(),
            Err(_) => t.clone(),
        });
        Self { sub: claims.sub.clone(), oid: claims.oid.as_ref().map(guid), tid, hd: None }
    }

    /// The first claim (in the order sub, oid, tid, hd) that differs, if any.
    pub fn changed_claim(&self, fresh: &Self) -> Option<ChangedClaim> {
        [
            (ChangedClaim::Sub, &self.sub, &fresh.sub),
            (ChangedClaim::Oid, &self.oid, &fresh.oid),
            (ChangedClaim::Tid, &self.tid, &fresh.tid),
            (ChangedClaim::Hd, &self.hd, &fresh.hd),
        ]
        .into_iter()
        .find(|(_, recorded, now)| recorded != now)
        .map(|(claim, ..)| claim)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangedClaim {
    Sub,
    Oid,
    Tid,
    Hd,
}

impl ChangedClaim {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sub => "sub",
            Self::Oid => "oid",
            Self::Tid => "tid",
            Self::Hd => "hd",
        }
    }
}

/// What the upstream refresh produced, as classified by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The refresh succeeded; the snapshot is taken from the refreshed ID token.
    Refreshed(IdentitySnapshot),
    /// The token endpoint answered `invalid_grant` (revoked, expired, user suspended).
    InvalidGrant,
    /// The provider said the account is disabled or deleted.
    AccountDisabled,
    /// Upstream 5xx, a timeout or a network failure: nothing is known about the account.
    Transient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    InvalidGrant,
    AccountDisabled,
    IdentityChanged(ChangedClaim),
}

impl RevokeReason {
    /// The stable audit reason; for an identity change, [`ChangedClaim::as_str`] names the claim.
    pub fn reason(self) -> &'static str {
        match self {
            Self::InvalidGrant => "invalid_grant",
            Self::AccountDisabled => "account_disabled",
            Self::IdentityChanged(_) => "identity_changed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The account is fine; check again at `next_check`.
    Keep { next_check: i64 },
    /// Revoke every session of the user for the organisation and suspend the membership.
    Revoke(RevokeReason),
    /// Upstream is unreachable but the grace has not run out: allow, retry at `after`.
    RetryLater { after: i64 },
    /// Upstream has been unreachable for longer than the grace: refuse (401), revoke nothing.
    FailClosed,
}

impl Decision {
    /// The audit reason of a refusal, `None` for the outcomes that allow.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Keep { .. } | Self::RetryLater { .. } => None,
            Self::Revoke(r) => Some(r.reason()),
            Self::FailClosed => Some("upstream_unavailable"),
        }
    }
}

/// Decides after an upstream refresh. `last_success` is the time of the last successful
/// check (the sign-in counts as one).
pub fn decide(
    outcome: &RefreshOutcome,
    recorded: &IdentitySnapshot,
    last_success: i64,
    now: i64,
    policy: &RecheckPolicy,
) -> Decision {
    match outcome {
        RefreshOutcome::Refreshed(fresh) => match recorded.changed_claim(fresh) {
            Some(claim) => Decision::Revoke(RevokeReason::IdentityChanged(claim)),
            None => Decision::Keep { next_check: now.saturating_add(policy.interval) },
        },
        RefreshOutcome::InvalidGrant => Decision::Revoke(RevokeReason::InvalidGrant),
        RefreshOutcome::AccountDisabled => Decision::Revoke(RevokeReason::AccountDisabled),
        RefreshOutcome::Transient => transient(last_success, now, policy),
    }
}

/// Retries are spaced by half the outage so far (bounded), which backs off without a failure
/// counter in the store; a last success in the future is a clock or data fault, and doubt
/// fails closed.
fn transient(last_success: i64, now: i64, policy: &RecheckPolicy) -> Decision {
    let elapsed = now.saturating_sub(last_success);
    if elapsed < 0 || elapsed > policy.grace {
        return Decision::FailClosed;
    }
    let delay = (elapsed / 2).clamp(MIN_RETRY_SECS, MAX_RETRY_SECS);
    // Never past the end of the grace, so the failure there is noticed on time.
    let deadline = last_success.saturating_add(policy.grace).saturating_add(1);
    Decision::RetryLater {
        after: now.saturating_add(delay).min(deadline).max(now.saturating_add(1)),
    }
}

/// What to do before minting a token for an EASIE session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Checked recently enough, or backing off inside the grace: go ahead.
    Allow,
    /// Refresh upstream now, then [`decide`].
    Refresh,
    /// Backing off and the grace has run out: refuse without calling upstream.
    Deny,
}

/// `retry_after` is the `after` of the last [`Decision::RetryLater`], if an outage is ongoing.
pub fn gate(last_success: i64, retry_after: Option<i64>, now: i64, policy: &RecheckPolicy) -> Gate {
    let elapsed = now.saturating_sub(last_success);
    if elapsed < 0 {
        return Gate::Refresh;
    }
    if elapsed < policy.interval {
        return Gate::Allow;
    }
    match retry_after {
        Some(after) if now < after && elapsed <= policy.grace => Gate::Allow,
        Some(after) if now < after => Gate::Deny,
        _ => Gate::Refresh,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn snap(sub: &str, hd: Option<&str>) -> IdentitySnapshot {
        IdentitySnapshot { sub: Some(sub.into()), hd: hd.map(Into::into), ..Default::default() }
    }

    fn ms(tid: &str, oid: &str) -> IdentitySnapshot {
        IdentitySnapshot {
            sub: Some("s".into()),
            oid: Some(oid.into()),
            tid: Some(tid.into()),
            hd: None,
        }
    }

    #[test]
    fn settings_have_defaults_and_bounds() {
        let p = RecheckPolicy::default();
        assert_eq!((p.interval(), p.grace()), (600, 3600));
        assert!(RecheckPolicy::new(60, 0).is_ok());
        assert!(RecheckPolicy::new(86_400, 604_800).is_ok());
        for (i, g) in [(59, 3600), (0, 3600), (-1, 3600), (86_401, 3600), (600, -1), (600, 604_801)]
        {
            assert_eq!(
                RecheckPolicy::new(i, g).unwrap_err().reason(),
                "invalid_setting",
                "{i} {g}"
            );
        }
    }

    #[test]
    fn a_matching_refresh_keeps_the_session() {
        let p = RecheckPolicy::default();
        let d = decide(
            &RefreshOutcome::Refreshed(snap("1", Some("acme.com"))),
            &snap("1", Some("acme.com")),
            0,
            1000,
            &p,
        );
        assert_eq!(d, Decision::Keep { next_check: 1600 });
        assert_eq!(d.reason(), None);
    }

    #[test]
    fn refusals_and_changes_revoke() {
        let p = RecheckPolicy::default();
        let rec = snap("1", Some("acme.com"));
        let revoke = |o: RefreshOutcome| decide(&o, &rec, 0, 10, &p);
        assert_eq!(
            revoke(RefreshOutcome::InvalidGrant),
            Decision::Revoke(RevokeReason::InvalidGrant)
        );
        assert_eq!(revoke(RefreshOutcome::AccountDisabled).reason(), Some("account_disabled"));
        let changed = |fresh| match revoke(RefreshOutcome::Refreshed(fresh)) {
            Decision::Revoke(RevokeReason::IdentityChanged(c)) => c.as_str(),
            other => panic!("{other:?}"),
        };
        assert_eq!(changed(snap("2", Some("acme.com"))), "sub");
        assert_eq!(changed(snap("1", Some("evil.com"))), "hd");
        assert_eq!(changed(snap("1", None)), "hd");
        let m = ms("t1", "o1");
        let revoke_ms = |fresh| decide(&RefreshOutcome::Refreshed(fresh), &m, 0, 10, &p);
        assert_eq!(
            revoke_ms(ms("t1", "o2")),
            Decision::Revoke(RevokeReason::IdentityChanged(ChangedClaim::Oid))
        );
        assert_eq!(
            revoke_ms(ms("t2", "o1")),
            Decision::Revoke(RevokeReason::IdentityChanged(ChangedClaim::Tid))
        );
        assert_eq!(revoke_ms(ms("t2", "o1")).reason(), Some("identity_changed"));
    }

    #[test]
    fn snapshots_normalise_case_only() {
        let g = GoogleClaims::from_json(r#"{"sub":"1","hd":"ACME.com"}"#).unwrap();
        assert_eq!(IdentitySnapshot::google(&g), snap("1", Some("acme.com")));
        let m = MicrosoftClaims::from_json(
            r#"{"sub":"s","tid":"72F988BF-86F1-41AF-91AB-2D7CD011DB47","oid":"ABCDEF00-0000-0000-0000-000000000001"}"#,
        )
        .unwrap();
        let s = IdentitySnapshot::microsoft(&m);
        assert_eq!(s.tid.as_deref(), Some("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert_eq!(s.oid.as_deref(), Some("abcdef00-0000-0000-0000-000000000001"));
    }

    #[test]
    fn an_outage_is_tolerated_for_the_grace_then_fails_closed() {
        let p = RecheckPolicy::default();
        let rec = snap("1", None);
        let t = |now| decide(&RefreshOutcome::Transient, &rec, 1000, now, &p);
        assert_eq!(t(1000 + 600), Decision::RetryLater { after: 1600 + 300 });
        assert_eq!(t(1000 + 20), Decision::RetryLater { after: 1020 + 15 });
        assert_eq!(t(1000 + 3500), Decision::RetryLater { after: 1000 + 3601 });
        assert_eq!(t(1000 + 3600), Decision::RetryLater { after: 1000 + 3601 });
        assert_eq!(t(1000 + 3601), Decision::FailClosed);
        assert_eq!(t(1000 + 3601).reason(), Some("upstream_unavailable"));
        assert_eq!(t(999), Decision::FailClosed, "a last success in the future is doubt");
        let strict = RecheckPolicy::new(60, 0).unwrap();
        assert_eq!(decide(&RefreshOutcome::Transient, &rec, 0, 60, &strict), Decision::FailClosed);
    }

    #[test]
    fn the_gate_checks_when_due_and_backs_off_within_the_grace() {
        let p = RecheckPolicy::default();
        assert_eq!(gate(1000, None, 1000, &p), Gate::Allow);
        assert_eq!(gate(1000, None, 1599, &p), Gate::Allow);
        assert_eq!(gate(1000, None, 1600, &p), Gate::Refresh);
        assert_eq!(gate(1000, Some(1700), 1650, &p), Gate::Allow);
        assert_eq!(gate(1000, Some(1700), 1700, &p), Gate::Refresh);
        assert_eq!(gate(1000, Some(4700), 4650, &p), Gate::Deny);
        assert_eq!(gate(1000, None, 999, &p), Gate::Refresh);
    }

    proptest! {
        #[test]
        fn an_outage_never_keeps_and_fails_closed_exactly_after_the_grace(
            last in -1_000_000i64..1_000_000, elapsed in -100i64..10_000,
            interval in 60i64..3600, grace in 0i64..7200,
        ) {
            let p = RecheckPolicy::new(interval, grace).unwrap();
            let d = decide(&RefreshOutcome::Transient, &IdentitySnapshot::default(), last, last + elapsed, &p);
            match d {
                Decision::FailClosed => prop_assert!(elapsed < 0 || elapsed > grace),
                Decision::RetryLater { after } => {
                    prop_assert!((0..=grace).contains(&elapsed));
                    prop_assert!(after > last + elapsed);
                    prop_assert!(after <= last + grace + 1);
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}
