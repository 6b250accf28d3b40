//! Gallery version policy, pure: which version is "latest", what promotion
//! and rollback change (`excludeFromLatest`), and which versions the pruning
//! policy removes. The release stage and the rollback command apply these
//! plans through Resource Manager; nothing here talks to Azure.
//!
//! A gallery's "latest" is its highest version not excluded from latest. So
//! promoting version V means: V is not excluded, every version above V is.
//! Versions below V are left as they are (kept, and never "latest" while V is
//! there).
//!
//! **A release never moves latest back.** Releasing V promotes it only when
//! no other version above it is latest ([`release`]); a release below the
//! current latest is published (kept, pinnable by its version) but excluded
//! from latest, and the latest stays. Making an earlier version latest again
//! is what rollback is for ([`promote`]).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::version::ImageVersion;

/// A gallery image version as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GalleryVersion {
    /// The version (`1.2.3`).
    pub version: ImageVersion,
    /// When it was published, if the gallery said.
    pub published: Option<DateTime<Utc>>,
    /// Whether it is excluded from "latest".
    pub exclude_from_latest: bool,
}

/// The gallery's latest version: the highest one not excluded from latest.
pub fn latest(versions: &[GalleryVersion]) -> Option<ImageVersion> {
    versions
        .iter()
        .filter(|v| !v.exclude_from_latest)
        .map(|v| v.version)
        .max()
}

/// One `excludeFromLatest` change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatestChange {
    /// The version changed.
    pub version: ImageVersion,
    /// Its new `excludeFromLatest`.
    pub exclude_from_latest: bool,
}

/// Why a promotion cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PromotionError {
    /// The target is not in the gallery.
    #[error("version {0} is not in the gallery (its versions: {1})")]
    UnknownVersion(ImageVersion, String),
}

/// The changes that make `target` the latest version: `target` included,
/// every higher version excluded. Already-correct versions are not listed, so
/// applying a plan twice changes nothing the second time.
pub fn promote(
    versions: &[GalleryVersion],
    target: ImageVersion,
) -> Result<Vec<LatestChange>, PromotionError> {
    if !versions.iter().any(|v| v.version == target) {
        let names: Vec<String> = versions.iter().map(|v| v.version.to_string()).collect();
        return Err(PromotionError::UnknownVersion(target, names.join(", ")));
    }
    let mut changes: Vec<LatestChange> = versions
        .iter()
        .filter_map(|v| {
            let want = v.version > target;
            (v.exclude_from_latest != want && v.version >= target).then_some(LatestChange {
                version: v.version,
                exclude_from_latest: want,
            })
        })
        .collect();
    // Exclude the higher versions before including the target, so that no
    // moment has a version above the target as "latest" by accident.
    changes.sort_by_key(|c| (!c.exclude_from_latest, c.version));
    Ok(changes)
}

/// What releasing a version does to a gallery ([`release`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleasePlan {
    /// The `excludeFromLatest` changes, in the order to apply them; none
    /// when the gallery already is as the plan wants (a repeated release).
    pub changes: Vec<LatestChange>,
    /// The higher version that is latest and stays latest, when the target
    /// is released below it: published, excluded from latest, not promoted.
    /// `None`: the target becomes latest.
    pub below_latest: Option<ImageVersion>,
    /// The versions the pruning policy removes once the changes are
    /// applied, lowest first: never the latest, a pinned version, or the
    /// target.
    pub prune: Vec<ImageVersion>,
}

impl ReleasePlan {
    /// The versions other than `target` this plan excludes from latest.
    pub fn excluded(&self, target: ImageVersion) -> Vec<ImageVersion> {
        self.changes
            .iter()
            .filter(|c| c.exclude_from_latest && c.version != target)
            .map(|c| c.version)
            .collect()
    }
}

/// The latest version other than `target`, when it is above `target`: the
/// version a release of `target` must not displace.
pub fn latest_above(versions: &[GalleryVersion], target: ImageVersion) -> Option<ImageVersion> {
    versions
        .iter()
        .filter(|v| v.version != target && !v.exclude_from_latest)
        .map(|v| v.version)
        .max()
        .filter(|latest| *latest > target)
}

/// The plan that releases `target`, a version the gallery holds, under the
/// pruning `policy` at `now`. When no other version above it is latest, it
/// becomes latest (the [`promote`] plan). When one is, it is published
/// below it: excluded from latest and the latest left as it is — a release
/// never moves latest back. Then the policy's versions are pruned, never
/// the target itself. Planning again on the gallery the plan left changes
/// nothing more.
pub fn release(
    versions: &[GalleryVersion],
    target: ImageVersion,
    policy: &PrunePolicy,
    now: DateTime<Utc>,
) -> Result<ReleasePlan, PromotionError> {
    let below_latest = latest_above(versions, target);
    let changes = match below_latest {
        None => promote(versions, target)?,
        Some(_) => {
            let Some(held) = versions.iter().find(|v| v.version == target) else {
                let names: Vec<String> = versions.iter().map(|v| v.version.to_string()).collect();
                return Err(PromotionError::UnknownVersion(target, names.join(", ")));
            };
            (!held.exclude_from_latest)
                .then_some(LatestChange {
                    version: target,
                    exclude_from_latest: true,
                })
                .into_iter()
                .collect()
        }
    };
    let after = applied(versions, &changes);
    let kept = PrunePolicy {
        pinned: policy.pinned.iter().copied().chain([target]).collect(),
        ..policy.clone()
    };
    Ok(ReleasePlan {
        prune: prune(&after, &kept, now),
        changes,
        below_latest,
    })
}

/// `versions` with `changes` applied.
pub fn applied(versions: &[GalleryVersion], changes: &[LatestChange]) -> Vec<GalleryVersion> {
    versions
        .iter()
        .map(|v| {
            let mut v = v.clone();
            if let Some(c) = changes.iter().find(|c| c.version == v.version) {
                v.exclude_from_latest = c.exclude_from_latest;
            }
            v
        })
        .collect()
}

/// Which versions to keep: the last `keep_last` and/or those younger than
/// `keep_days`; `pinned` versions and the latest are always kept. With
/// neither limit set, nothing is pruned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrunePolicy {
    /// Keep this many highest versions.
    pub keep_last: Option<u32>,
    /// Keep versions published less than this many days ago.
    pub keep_days: Option<u32>,
    /// Versions never removed (pinned by consumers).
    pub pinned: Vec<ImageVersion>,
}

/// The versions the policy removes, lowest first. A version is kept when it
/// is the latest, is pinned, is among the `keep_last` highest, or was
/// published less than `keep_days` days before `now` (a version without a
/// publication date counts as young: unknown age is never a reason to delete).
pub fn prune(
    versions: &[GalleryVersion],
    policy: &PrunePolicy,
    now: DateTime<Utc>,
) -> Vec<ImageVersion> {
    if policy.keep_last.is_none() && policy.keep_days.is_none() {
        return Vec::new();
    }
    let latest = latest(versions);
    let mut ordered: Vec<&GalleryVersion> = versions.iter().collect();
    ordered.sort_by_key(|v| std::cmp::Reverse(v.version));
    ordered.dedup_by_key(|v| v.version);
    let keep_last = policy.keep_last.unwrap_or(0) as usize;
    let mut doomed: Vec<ImageVersion> = ordered
        .iter()
        .enumerate()
        .filter(|(rank, v)| {
            let recent = *rank < keep_last;
            let young = match (policy.keep_days, v.published) {
                // An age past what the clock can count keeps every version.
                (Some(days), Some(at)) => {
                    Duration::try_days(i64::from(days)).is_none_or(|age| now - at < age)
                }
                (Some(_), None) => true,
                (None, _) => false,
            };
            let protected = Some(v.version) == latest || policy.pinned.contains(&v.version);
            !(recent || young || protected)
        })
        .map(|(_, v)| v.version)
        .collect();
    doomed.sort();
    doomed
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn v(s: &str) -> ImageVersion {
        s.parse().expect("a version")
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    fn gv(version: &str, days_old: i64, excluded: bool) -> GalleryVersion {
        GalleryVersion {
            version: v(version),
            published: Some(now() - Duration::days(days_old)),
            exclude_from_latest: excluded,
        }
    }

    /// A recorded listing: five monthly versions, the newest still excluded
    /// (built and tested, not yet released).
    fn listing() -> Vec<GalleryVersion> {
        vec![
            gv("2026.701.0", 140, false),
            gv("2026.801.0", 110, false),
            gv("2026.901.0", 80, false),
            gv("2026.1001.0", 50, false),
            gv("2026.1125.0", 0, true),
        ]
    }

    #[test]
    fn latest_is_the_highest_version_not_excluded() {
        assert_eq!(latest(&listing()), Some(v("2026.1001.0")));
        assert_eq!(latest(&[gv("1.0.0", 1, true)]), None);
    }

    #[test]
    fn promoting_the_new_version_includes_it_and_changes_nothing_else() {
        let plan = promote(&listing(), v("2026.1125.0")).unwrap();
        assert_eq!(
            plan,
            vec![LatestChange {
                version: v("2026.1125.0"),
                exclude_from_latest: false
            }]
        );
    }

    #[test]
    fn rolling_back_excludes_every_higher_version_first() {
        let mut versions = listing();
        versions[4].exclude_from_latest = false;
        let plan = promote(&versions, v("2026.901.0")).unwrap();
        assert_eq!(
            plan,
            vec![
                LatestChange {
                    version: v("2026.1001.0"),
                    exclude_from_latest: true
                },
                LatestChange {
                    version: v("2026.1125.0"),
                    exclude_from_latest: true
                },
            ]
        );
        let applied = applied(&versions, &plan);
        assert_eq!(latest(&applied), Some(v("2026.901.0")));
        assert_eq!(promote(&applied, v("2026.901.0")).unwrap(), vec![]);
    }

    #[test]
    fn promoting_a_version_the_gallery_does_not_have_is_refused() {
        assert!(matches!(
            promote(&listing(), v("9.9.9")),
            Err(PromotionError::UnknownVersion(..))
        ));
    }

    #[test]
    fn pruning_keeps_the_last_n_and_the_pinned() {
        let policy = PrunePolicy {
            keep_last: Some(2),
            keep_days: None,
            pinned: vec![v("2026.701.0")],
        };
        assert_eq!(
            prune(&listing(), &policy, now()),
            vec![v("2026.801.0"), v("2026.901.0")]
        );
    }

    #[test]
    fn pruning_by_age_keeps_the_young_and_the_latest() {
        let policy = PrunePolicy {
            keep_last: None,
            keep_days: Some(60),
            pinned: vec![],
        };
        // 2026.1001.0 is 50 days old; 2026.1125.0 is new. The rest go.
        assert_eq!(
            prune(&listing(), &policy, now()),
            vec![v("2026.701.0"), v("2026.801.0"), v("2026.901.0")]
        );
        let policy = PrunePolicy {
            keep_days: Some(10),
            ..policy
        };
        assert!(
            !prune(&listing(), &policy, now()).contains(&v("2026.1001.0")),
            "the latest is kept however old"
        );
    }

    #[test]
    fn without_limits_nothing_is_pruned() {
        assert!(prune(&listing(), &PrunePolicy::default(), now()).is_empty());
    }

    #[test]
    fn a_new_highest_version_is_promoted_and_nothing_else_changes() {
        let plan = release(&listing(), v("2026.1125.0"), &PrunePolicy::default(), now()).unwrap();
        assert_eq!(
            plan,
            ReleasePlan {
                changes: vec![LatestChange {
                    version: v("2026.1125.0"),
                    exclude_from_latest: false
                }],
                below_latest: None,
                prune: vec![],
            }
        );
    }

    #[test]
    fn a_release_below_the_latest_is_published_excluded_and_latest_stays() {
        // 2026.1001.0 is latest; 2026.950.0 was built earlier, approved later.
        let mut versions = listing();
        versions.push(gv("2026.950.0", 1, false));
        let plan = release(&versions, v("2026.950.0"), &PrunePolicy::default(), now()).unwrap();
        assert_eq!(plan.below_latest, Some(v("2026.1001.0")));
        assert_eq!(
            plan.changes,
            vec![LatestChange {
                version: v("2026.950.0"),
                exclude_from_latest: true
            }]
        );
        assert!(plan.excluded(v("2026.950.0")).is_empty());
        let after = applied(&versions, &plan.changes);
        assert_eq!(latest(&after), Some(v("2026.1001.0")));
        // Releasing it again changes nothing, and says the same.
        let again = release(&after, v("2026.950.0"), &PrunePolicy::default(), now()).unwrap();
        assert_eq!(
            (again.changes, again.below_latest),
            (vec![], Some(v("2026.1001.0")))
        );
        // Rollback is what moves latest back.
        let back = applied(&after, &promote(&after, v("2026.950.0")).unwrap());
        assert_eq!(latest(&back), Some(v("2026.950.0")));
    }

    #[test]
    fn a_release_is_never_pruned_by_its_own_policy() {
        let mut versions = listing();
        versions[4].exclude_from_latest = false;
        versions.push(gv("2026.950.0", 200, true));
        let policy = PrunePolicy {
            keep_last: Some(1),
            keep_days: None,
            pinned: vec![],
        };
        let plan = release(&versions, v("2026.950.0"), &policy, now()).unwrap();
        assert_eq!(plan.below_latest, Some(v("2026.1125.0")));
        assert!(!plan.prune.contains(&v("2026.950.0")), "{plan:?}");
        assert!(plan.prune.contains(&v("2026.701.0")), "{plan:?}");
    }

    fn arb_versions() -> impl Strategy<Value = Vec<GalleryVersion>> {
        prop::collection::vec((0u32..4, 0u32..6, 0u32..5, 0i64..400, any::<bool>()), 0..12)
            .prop_map(|mut items| {
                // A gallery's version names are unique.
                items.sort_by_key(|(a, b, c, ..)| (*a, *b, *c));
                items.dedup_by_key(|(a, b, c, ..)| (*a, *b, *c));
                items
                    .into_iter()
                    .map(|(a, b, c, days, excluded)| GalleryVersion {
                        version: ImageVersion::new(a, b, c).expect("small parts"),
                        published: Some(now() - Duration::days(days)),
                        exclude_from_latest: excluded,
                    })
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn pruning_never_removes_the_latest_or_a_pinned_version(
            versions in arb_versions(),
            keep_last in prop::option::of(0u32..5),
            keep_days in prop::option::of(0u32..200),
            pin_index in any::<prop::sample::Index>(),
        ) {
            let pinned = if versions.is_empty() {
                vec![]
            } else {
                vec![versions[pin_index.index(versions.len())].version]
            };
            let policy = PrunePolicy { keep_last, keep_days, pinned: pinned.clone() };
            let doomed = prune(&versions, &policy, now());
            if let Some(latest) = latest(&versions) {
                prop_assert!(!doomed.contains(&latest));
            }
            for p in &pinned {
                prop_assert!(!doomed.contains(p));
            }
            // The keep_last highest distinct versions survive.
            let mut distinct: Vec<ImageVersion> = versions.iter().map(|v| v.version).collect();
            distinct.sort();
            distinct.dedup();
            let kept_top = distinct.iter().rev().take(keep_last.unwrap_or(0) as usize);
            for k in kept_top {
                prop_assert!(!doomed.contains(k));
            }
            // Pruning what is left removes nothing more.
            let left: Vec<GalleryVersion> = versions
                .iter()
                .filter(|v| !doomed.contains(&v.version))
                .cloned()
                .collect();
            prop_assert_eq!(prune(&left, &policy, now()), Vec::<ImageVersion>::new());
        }

        #[test]
        fn a_release_never_moves_latest_back_and_repeating_it_changes_nothing(
            versions in arb_versions(),
            index in any::<prop::sample::Index>(),
            keep_last in prop::option::of(0u32..5),
            keep_days in prop::option::of(0u32..200),
        ) {
            prop_assume!(!versions.is_empty());
            let target = versions[index.index(versions.len())].version;
            let policy = PrunePolicy { keep_last, keep_days, pinned: vec![] };
            let others: Vec<GalleryVersion> =
                versions.iter().filter(|v| v.version != target).cloned().collect();
            let before = latest(&others);
            let plan = release(&versions, target, &policy, now()).expect("the target is listed");
            let after = applied(&versions, &plan.changes);
            // Latest is the higher of the target and the latest before it.
            prop_assert_eq!(latest(&after), Some(before.map_or(target, |b| b.max(target))));
            match plan.below_latest {
                // Below the latest: only the target changes, excluded.
                Some(kept) => {
                    prop_assert_eq!(Some(kept), before);
                    prop_assert!(kept > target);
                    prop_assert!(plan.changes.iter().all(|c| c.version == target && c.exclude_from_latest));
                }
                None => prop_assert_eq!(latest(&after), Some(target)),
            }
            // The target, the latest and pinned versions are never pruned.
            prop_assert!(!plan.prune.contains(&target));
            if let Some(l) = latest(&after) {
                prop_assert!(!plan.prune.contains(&l));
            }
            // Releasing again changes nothing and says the same.
            let again = release(&after, target, &policy, now()).expect("listed");
            prop_assert_eq!(again.changes, vec![]);
            prop_assert_eq!(again.below_latest, plan.below_latest);
        }

        #[test]
        fn after_a_promotion_the_target_is_latest(
            versions in arb_versions(),
            index in any::<prop::sample::Index>(),
        ) {
            prop_assume!(!versions.is_empty());
            let target = versions[index.index(versions.len())].version;
            let plan = promote(&versions, target).expect("the target is listed");
            let applied = applied(&versions, &plan);
            prop_assert_eq!(latest(&applied), Some(target));
            prop_assert_eq!(promote(&applied, target).expect("listed"), vec![]);
        }
    }
}
